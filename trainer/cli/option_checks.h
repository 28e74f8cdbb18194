#pragma once
// CLI11 validators the subcommands share. CLI11's own number checks let NaN through (every
// comparison with NaN is false) and accept infinities, so real-valued options use these.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "trainer/config/device.h"

namespace rwkv::cli {

// A finite number above zero, or from zero on when `zero_allowed`.
inline CLI::Validator finite_number(bool zero_allowed) {
  const std::string bound = zero_allowed ? ">= 0" : "> 0";
  return CLI::Validator(
      [zero_allowed, bound](const std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "expected a number, got '" + text + "'";
        if (!std::isfinite(v) || v < 0 || (!zero_allowed && v == 0))
          return "expected a finite number " + bound + ", got '" + text + "'";
        return {};
      },
      "FINITE" + bound);
}

// A number n with 0 < n < infinity.
inline const CLI::Validator finite_positive = finite_number(false);
// A number n with 0 <= n < infinity.
inline const CLI::Validator finite_non_negative = finite_number(true);

// A non-negative integer (CLI11 reads "-1" into an unsigned option as 2^64 - 1).
inline const CLI::Validator non_negative_integer(
    [](const std::string& text) -> std::string {
      if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
        return "expected a non-negative integer, got '" + text + "'";
      return {};
    },
    "UINT");

// A torch device name ("cpu", "cuda", "cuda:1"; "auto" too): a bad one is a usage error before
// any work, not a LibTorch error.
inline const CLI::Validator device_name(
    [](const std::string& name) -> std::string {
      try {
        (void)trainer::resolve_device(name);  // the one device resolution (trainer/config/device.h)
        return {};
      } catch (const std::invalid_argument& e) {
        return e.what();
      }
    },
    "DEVICE");

}  // namespace rwkv::cli
