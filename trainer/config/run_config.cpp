#include "trainer/config/run_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "rwkv/reference_layout.h"
#include "trainer/config/field_table.h"
#include "trainer/config/model_config_yaml.h"
#include "trainer/config/yaml_section.h"

namespace rwkv::trainer {

template <>
struct EnumNames<SamplerKind> {
  static constexpr std::pair<SamplerKind, const char*> v[] = {
      {SamplerKind::magic_prime, "magic_prime"}, {SamplerKind::random, "random"}};
};
template <>
struct EnumNames<Precision> {
  static constexpr std::pair<Precision, const char*> v[] = {
      {Precision::auto_, "auto"}, {Precision::fp32, "fp32"}, {Precision::bf16, "bf16"}};
};
template <>
struct EnumNames<DeviceKind> {
  static constexpr std::pair<DeviceKind, const char*> v[] = {
      {DeviceKind::auto_, "auto"}, {DeviceKind::cpu, "cpu"}, {DeviceKind::cuda, "cuda"}};
};
template <>
struct EnumNames<SegmentGrad> {
  static constexpr std::pair<SegmentGrad, const char*> v[] = {{SegmentGrad::exact, "exact"},
                                                              {SegmentGrad::truncated, "truncated"}};
};
template <>
struct EnumNames<ResumeMode> {
  static constexpr std::pair<ResumeMode, const char*> v[] = {{ResumeMode::auto_, "auto"},
                                                             {ResumeMode::never, "never"},
                                                             {ResumeMode::restart, "restart"}};
};

template <>
struct EnumNames<logging::Level> {
  static constexpr std::pair<logging::Level, const char*> v[] = {{logging::Level::trace, "trace"},
                                                                 {logging::Level::debug, "debug"},
                                                                 {logging::Level::info, "info"},
                                                                 {logging::Level::warn, "warn"},
                                                                 {logging::Level::error, "error"}};
};
template <>
struct EnumNames<LogConsole> {
  static constexpr std::pair<LogConsole, const char*> v[] = {
      {LogConsole::rank0, "rank0"}, {LogConsole::all, "all"}, {LogConsole::none, "none"}};
};

namespace {

constexpr auto safe = OnResume::safe, unsafe = OnResume::unsafe;

// ---- validity ----------------------------------------------------------------------------------

const Valid<int64_t> positive_int = [](const int64_t& v) { return v > 0; };
const Valid<int64_t> non_negative_int = [](const int64_t& v) { return v >= 0; };
const Valid<double> non_negative_real = [](const double& v) { return std::isfinite(v) && v >= 0; };
const Valid<std::string> non_empty = [](const std::string& v) { return !v.empty(); };
const auto in_range = [](double lo, double hi) { return Valid<double>([=](const double& v) { return v >= lo && v <= hi; }); };

// The optimizer computes in fp32 (trainer/optim/optimizer.h): a value outside fp32's normal range
// would round to 0 or overflow to inf there.
bool fp32_normal(double v) {
  return v >= std::numeric_limits<float>::min() && v <= std::numeric_limits<float>::max();
}
const Valid<double> fp32_positive = [](const double& v) { return fp32_normal(v); };
const Valid<double> fp32_non_negative = [](const double& v) { return v == 0 || fp32_normal(v); };
std::string positive_fp32(const std::string& what) { return what + " within fp32's range 1.2e-38 to 3.4e38"; }
std::string non_negative_fp32(const std::string& what) { return what + ", 0 or within fp32's range 1.2e-38 to 3.4e38"; }

std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

// ---- fields that are not one plain value -------------------------------------------------------

// The last name components of the model's parameters (the same for every shape), which lr_mult
// keys match (trainer/optim/lr_mult.h).
const std::set<std::string>& parameter_suffixes() {
  static const std::set<std::string> out = [] {
    std::set<std::string> s;
    for (const auto& t : reference_layout(ModelConfig{.n_layer = 1, .n_embd = 1, .vocab_size = 1}))
      s.insert(t.name.substr(t.name.rfind('.') + 1));
    return s;
  }();
  return out;
}

// `lr_mult: {key: multiplier}` merged into the struct's map: each given key replaces every key
// there that it matches (run_config.h OptimizerConfig::lr_mult).
template <typename S>
Field<S> lr_mult_field(LrMult S::*member) {
  const auto read = [member](YamlSection& s, S& obj, bool) {
    const bool given = s.has("lr_mult");
    const YAML::Node node = s.child("lr_mult");
    if (!given) return;
    if (!node.IsMap()) s.fail("lr_mult", "expected a mapping of parameter-name suffix: multiplier");
    YamlSection m(node, s.file(), s.path() + ".lr_mult");
    LrMult merged;
    for (const auto& kv : node) {
      const std::string key = kv.first.Scalar();
      merged[key] = m.required<double>(key, positive_fp32("a positive multiplier"), fp32_positive);
      const auto& names = parameter_suffixes();
      if (std::none_of(names.begin(), names.end(), [&](const std::string& n) { return lr_mult_key_matches(key, n); }))
        m.fail(key, fmt::format("matches no parameter of the model (a key is the last component of a parameter "
                                "name, or a prefix of it ending in '*'; the model's are {})",
                                fmt::join(names, ", ")));
    }
    for (const auto& [key, v] : obj.*member) {
      const auto replaces = [&](const auto& given_kv) { return lr_mult_key_matches(given_kv.first, key); };
      if (std::none_of(merged.begin(), merged.end(), replaces)) merged.emplace(key, v);
    }
    obj.*member = merged;
  };
  const auto write = [member](YAML::Emitter& e, const S& obj) {
    e << YAML::Key << "lr_mult" << YAML::Value << YAML::BeginMap;
    for (const auto& [k, v] : obj.*member) {
      e << YAML::Key << k << YAML::Value;
      put(e, v);
    }
    e << YAML::EndMap;
  };
  return Field<S>{"lr_mult", unsafe, read, write};
}

// lr_final: defaults to lr_init when lr_init is given here (a constant rate), else keeps what the
// struct holds (a stage inherits the optimizer's); never above lr_init.
template <typename S>
Field<S> lr_final_field() {
  const auto read = [](YamlSection& s, S& obj, bool) {
    obj.lr_final = s.optional<double>("lr_final", s.has("lr_init") ? obj.lr_init : obj.lr_final,
                                      positive_fp32("a positive learning rate <= lr_init"), fp32_positive);
    if (obj.lr_final > obj.lr_init) s.fail("lr_final", fmt::format("must not exceed lr_init = {}", obj.lr_init));
  };
  const auto write = [](YAML::Emitter& e, const S& obj) {
    e << YAML::Key << "lr_final" << YAML::Value;
    put(e, obj.lr_final);
  };
  return Field<S>{"lr_final", unsafe, read, write};
}

// `betas: [beta1, beta2]` into AdamConfig's two fields; each below 1 also once rounded to fp32.
Field<OptimizerConfig> betas_field() {
  const auto read = [](YamlSection& s, OptimizerConfig& o, bool) {
    const bool given = s.has("betas");
    s.child("betas");
    if (!given) return;
    const auto b = s.required<std::vector<double>>(
        "betas", "[beta1, beta2] with 0 <= beta < 1 (also in fp32)", [](const std::vector<double>& v) {
          const auto ok = [](double x) { return x >= 0 && static_cast<float>(x) < 1.0f; };
          return v.size() == 2 && ok(v[0]) && ok(v[1]);
        });
    o.beta1 = b[0];
    o.beta2 = b[1];
  };
  const auto write = [](YAML::Emitter& e, const OptimizerConfig& o) {
    e << YAML::Key << "betas" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    put(e, o.beta1);
    put(e, o.beta2);
    e << YAML::EndSeq;
  };
  return Field<OptimizerConfig>{"betas", unsafe, read, write};
}

// `peak_tflops: NUMBER | auto`.
Field<LogConfig> peak_tflops_field() {
  const auto read = [](YamlSection& s, LogConfig& l, bool) {
    l.peak_auto = s.has("peak_tflops") && s.child("peak_tflops").IsScalar() && s.child("peak_tflops").Scalar() == "auto";
    if (!l.peak_auto)
      l.peak_tflops = s.optional<double>("peak_tflops", l.peak_tflops,
                                         "a non-negative number (TFLOP/s; 0: no MFU) or auto (found at startup)",
                                         non_negative_real);
  };
  const auto write = [](YAML::Emitter& e, const LogConfig& l) {
    e << YAML::Key << "peak_tflops" << YAML::Value;
    if (l.peak_auto)
      e << "auto";
    else
      put(e, l.peak_tflops);
  };
  return Field<LogConfig>{"peak_tflops", safe, read, write};
}

// A stage as written in YAML: its length in one of three units, E_c in mini-epochs. Starts from
// the sections' values (inherited), then resolve_stage turns it into a Stage.
struct StageEntry {
  int64_t ctx_len = 0, micro_batch = 0, grad_accum = 1, segment_len = 0;
  int64_t steps = 0, tokens = 0, epoch_count = 0;
  double lr_init = 0, lr_final = 0;
  int64_t warmup_steps = 0, constant_epochs = 0;
  LrMult lr_mult;
};

// ---- the tables ----------------------------------------------------------------------------------

const Fields<DataConfig>& data_fields() {
  using D = DataConfig;
  static const Fields<D> f{
      value("path", &D::path, "a token file from `rwkv prep` (binidx prefix or .h5)", non_empty, unsafe, Need::required),
      value("tokenizer", &D::tokenizer, "'byte' or a tokenizer JSON file", non_empty, unsafe),
      choice("sampler", &D::sampler, unsafe),
      value("ctx_len", &D::ctx_len, "a positive integer (tokens per sample)", positive_int, unsafe, Need::without_stages),
  };
  return f;
}

// Safe on resume: caps, paths, and how the same arithmetic is spread over threads and ranks
// (activation checkpointing recomputes the same forward, so the gradients do not change; exact
// segments give the same gradient up to fp32 rounding, and unsafe_resume_change refuses a new
// segment length under truncated gradients).
const Fields<TrainConfig>& train_fields() {
  using T = TrainConfig;
  static const Fields<T> f{
      value("run_dir", &T::run_dir, "a directory for checkpoints, metrics and the config", non_empty, safe, Need::required),
      value("micro_batch", &T::micro_batch, "a positive integer (samples per forward)", positive_int, unsafe, Need::required),
      value("grad_accum", &T::grad_accum, "a positive integer", positive_int, unsafe),
      value("epoch_samples", &T::epoch_samples, "a positive integer (samples per mini-epoch)", positive_int, unsafe),
      value("epoch_count", &T::epoch_count, "a positive integer (mini-epochs to the end of the LR schedule)",
            positive_int, unsafe, Need::without_stages),
      value("max_steps", &T::max_steps, "a non-negative integer (0: no cap)", non_negative_int, safe),
      value("seed", &T::seed, "a non-negative integer", nullptr, unsafe),
      choice("precision", &T::precision, unsafe),
      choice("device", &T::device, unsafe),
      value("nan_skip_limit", &T::nan_skip_limit, "a positive integer", positive_int, safe),
      value("threads", &T::threads, "a non-negative integer (0: LibTorch's default)", non_negative_int, safe),
      value("activation_checkpointing", &T::activation_checkpointing, "true or false", nullptr, safe),
      value("segment_len", &T::segment_len, "a non-negative integer (tokens per segment; 0: the whole sample)",
            non_negative_int, safe),
      choice("segment_grad", &T::segment_grad, unsafe),
      value("dist_timeout_s", &T::dist_timeout_s, "a number of seconds from 0.001 to 1e9", in_range(1e-3, 1e9), safe),
      value("zero_stage", &T::zero_stage, "0, 1 or 2", [](const int64_t& v) { return v >= 0 && v <= 2; }, safe),
      value("grad_bucket_mb", &T::grad_bucket_mb, "a size in MiB from 0.001 to 1048576", in_range(1e-3, 1 << 20), safe),
      value("overlap_grad_reduce", &T::overlap_grad_reduce, "true or false", nullptr, safe),
  };
  return f;
}

const Fields<OptimizerConfig>& optimizer_fields() {
  using O = OptimizerConfig;  // eps and weight_decay are AdamConfig's: named with <O, double>
  static const Fields<O> f{
      value("lr_init", &O::lr_init, positive_fp32("a positive learning rate"), fp32_positive, unsafe, Need::required),
      lr_final_field<O>(),
      value("constant_epochs", &O::constant_epochs, "a non-negative integer (E_c)", non_negative_int, unsafe),
      value("warmup_steps", &O::warmup_steps, "a non-negative integer", non_negative_int, unsafe),
      betas_field(),
      value<O, double>("eps", &O::eps, positive_fp32("a positive number"), fp32_positive, unsafe),
      value<O, double>("weight_decay", &O::weight_decay, non_negative_fp32("a non-negative number"), fp32_non_negative, unsafe),
      value("grad_clip", &O::grad_clip, non_negative_fp32("a non-negative global norm (0: off)"), fp32_non_negative,
            unsafe),
      lr_mult_field(&O::lr_mult),
      value("l2wrap", &O::l2wrap, non_negative_fp32("a non-negative factor (0: off)"), fp32_non_negative, unsafe),
  };
  return f;
}

// Where and how often checkpoints are written, what is logged and printed: all safe on resume.
const Fields<CheckpointConfig>& checkpoint_fields() {
  using K = CheckpointConfig;
  static const Fields<K> f{
      value("dir", &K::dir, "a directory", non_empty, safe),
      value("every_steps", &K::every_steps, "a positive integer", positive_int, safe),
      value("keep", &K::keep, "a positive integer (checkpoints kept)", positive_int, safe),
      value("write_timeout_s", &K::write_timeout_s, "a number of seconds from 0.001 to 1e9", in_range(1e-3, 1e9), safe),
      value("async", &K::async, "true or false", nullptr, safe),
      choice("resume", &K::resume, safe),
      value("init_from", &K::init_from, "a checkpoint directory or a .pth file", nullptr, safe),
  };
  return f;
}

const Fields<LogConfig>& log_fields() {
  static const Fields<LogConfig> f{
      value("every_steps", &LogConfig::every_steps, "a positive integer", positive_int, safe),
      peak_tflops_field(),
      choice("level", &LogConfig::level, safe),
      choice("console", &LogConfig::console, safe),
      value("file_max_mb", &LogConfig::file_max_mb, "a size in MiB from 0.001 to 1048576", in_range(1e-3, 1 << 20), safe),
      value("file_keep", &LogConfig::file_keep, "an integer from 0 to 1000 (rotated log files kept)",
            [](const int64_t& v) { return v >= 0 && v <= 1000; }, safe),
  };
  return f;
}

// Only split_tokens changes what the run trains on; the rest is what is measured and how often.
// Of path and split_tokens (check_validation: exactly one) only the given one is written.
const Fields<ValidationConfig>& validation_fields() {
  using V = ValidationConfig;
  static const Fields<V> f{
      value("path", &V::path, "a held-out token file (binidx prefix, .h5/.hdf5) or a .txt file", nullptr, safe,
            Need::alternative),
      value("split_tokens", &V::split_tokens, "a non-negative integer (tokens at the end of data.path held out)",
            non_negative_int, unsafe, Need::alternative),
      value("max_tokens", &V::max_tokens, "0 (all held-out tokens) or a token count of at least 2",
            [](const int64_t& v) { return v == 0 || v >= 2; }, safe),
      value("every_steps", &V::every_steps, "a non-negative integer (0: only at the end of each stage)",
            non_negative_int, safe),
      value("batch", &V::batch, "a positive integer (windows per forward pass)", positive_int, safe),
  };
  return f;
}

const Fields<SampleConfig>& sample_fields() {
  using P = SampleConfig;
  static const Fields<P> f{
      value("prompt", &P::prompt, "a text", nullptr, safe),
      value("length", &P::length, "a non-negative integer", non_negative_int, safe),
      value("temperature", &P::temperature, "a non-negative number (0: greedy)", non_negative_real, safe),
  };
  return f;
}

// A stage's fields as its entry in `stages:` (the order of to_yaml). Stages already run may not
// change on resume; stages appended after them may (unsafe_resume_change).
const Fields<StageEntry>& stage_fields() {
  using E = StageEntry;
  static const Fields<E> f{
      value("ctx_len", &E::ctx_len, "a positive integer", positive_int, unsafe),
      value("micro_batch", &E::micro_batch, "a positive integer", positive_int, unsafe),
      value("grad_accum", &E::grad_accum, "a positive integer", positive_int, unsafe),
      value("segment_len", &E::segment_len, "a non-negative integer (tokens per segment; 0: the whole sample)",
            non_negative_int, safe),
      value("steps", &E::steps, "a positive integer", positive_int, unsafe, Need::alternative),
      value("tokens", &E::tokens, "a positive token count", positive_int, unsafe, Need::alternative),
      value("epoch_count", &E::epoch_count, "a positive integer (mini-epochs)", positive_int, unsafe, Need::alternative),
      value("lr_init", &E::lr_init, positive_fp32("a positive learning rate"), fp32_positive, unsafe),
      lr_final_field<E>(),
      value("warmup_steps", &E::warmup_steps, "a non-negative integer", non_negative_int, unsafe),
      value("constant_epochs", &E::constant_epochs, "a non-negative integer (E_c)", non_negative_int, unsafe),
      lr_mult_field(&E::lr_mult),
  };
  return f;
}

const std::map<std::string, OnResume>& resume_rules() {
  static const auto rules = [] {
    std::map<std::string, OnResume> r;
    add_resume_rules("model", model_fields(), r);
    add_resume_rules("data", data_fields(), r);
    add_resume_rules("train", train_fields(), r);
    add_resume_rules("optimizer", optimizer_fields(), r);
    add_resume_rules("checkpoint", checkpoint_fields(), r);
    add_resume_rules("log", log_fields(), r);
    add_resume_rules("validation", validation_fields(), r);
    add_resume_rules("sample", sample_fields(), r);
    add_resume_rules("stages", stage_fields(), r);
    return r;
  }();
  return rules;
}

// ---- stages --------------------------------------------------------------------------------------

// Cross-field checks on one stage's batch: labelled with the stage, or train.micro_batch.
void check_batch(const RunConfig& c, const Stage& st, const YamlSection& where, const std::string& key) {
  if (!checked_mul(st.micro_batch, st.grad_accum))
    where.fail(key, fmt::format("the global batch micro_batch*grad_accum = {}*{} overflows 64 bits", st.micro_batch,
                                st.grad_accum));
  const int64_t gb = st.global_batch();
  if (c.data.sampler == SamplerKind::magic_prime && c.train.epoch_samples % gb != 0) {
    where.fail(key, fmt::format("the global batch micro_batch*grad_accum = {}*{} = {} must divide "
                                "train.epoch_samples = {} in magic_prime mode (each mini-epoch is a "
                                "whole number of steps; data/README.md 'Token files and sample order')",
                                st.micro_batch, st.grad_accum, gb, c.train.epoch_samples));
  }
  if (gb > c.train.epoch_samples) {
    where.fail(key, fmt::format("the global batch {} exceeds train.epoch_samples = {}", gb, c.train.epoch_samples));
  }
}

// `count` mini-epochs in steps; an overflow is an error at `key`.
int64_t epochs_to_steps(int64_t count, int64_t steps_per_epoch, const YamlSection& where, const std::string& key) {
  const auto steps = checked_mul(count, steps_per_epoch);
  if (!steps)
    where.fail(key, fmt::format("{} mini-epochs of {} steps overflow the 64-bit step count", count, steps_per_epoch));
  return *steps;
}

// The loop counts samples and tokens in 64 bits: steps·global_batch·(ctx_len+1) must fit.
int64_t stage_tokens(const Stage& st, const YamlSection& where, const std::string& key) {
  const uint64_t per_sample = static_cast<uint64_t>(st.ctx_len) + 1;  // ctx_len may be 2^63 - 1
  const auto samples = checked_mul(st.steps, st.global_batch());
  const auto tokens = samples && per_sample <= INT64_MAX ? checked_mul(*samples, static_cast<int64_t>(per_sample))
                                                         : std::nullopt;
  if (!tokens)
    where.fail(key, fmt::format("{} steps of {} samples of {} tokens overflow the run's 64-bit sample and token counts",
                                st.steps, st.global_batch(), per_sample));
  return *tokens;
}

StageEntry inherited_stage(const RunConfig& c) {
  StageEntry e;
  e.ctx_len = c.data.ctx_len;
  e.micro_batch = c.train.micro_batch;
  e.grad_accum = c.train.grad_accum;
  e.segment_len = c.train.segment_len;
  e.lr_init = c.optimizer.lr_init;
  e.lr_final = c.optimizer.lr_final;
  e.warmup_steps = c.optimizer.warmup_steps;
  e.lr_mult = c.optimizer.lr_mult;
  return e;
}

Stage resolve_stage(const StageEntry& e, YamlSection& s, const RunConfig& c) {
  Stage st;
  st.ctx_len = e.ctx_len;
  if (st.ctx_len <= 0) s.fail("ctx_len", "missing; expected a positive integer (or data.ctx_len)");
  st.micro_batch = e.micro_batch;
  st.grad_accum = e.grad_accum;
  st.segment_len = e.segment_len;
  check_batch(c, st, s, s.has("micro_batch") ? "micro_batch" : s.has("grad_accum") ? "grad_accum" : "ctx_len");
  const int64_t gb = st.global_batch(), spe = c.train.epoch_samples / gb;
  const int n_len = (e.steps > 0) + (e.tokens > 0) + (e.epoch_count > 0);
  if (n_len != 1) s.fail("steps", "give exactly one of steps, tokens or epoch_count for the stage's length");
  if (e.steps > 0) {
    st.steps = e.steps;
  } else if (e.tokens > 0) {
    // Whole steps, rounded up; a step of more than 2^63 tokens holds them all in one.
    const auto per_step = checked_mul(gb, st.ctx_len);
    st.steps = !per_step ? 1 : e.tokens / *per_step + (e.tokens % *per_step != 0);
  } else {
    st.steps = epochs_to_steps(e.epoch_count, spe, s, "epoch_count");
  }
  st.constant_steps = epochs_to_steps(e.constant_epochs, spe, s, "constant_epochs");
  if (st.constant_steps > st.steps)
    s.fail("constant_epochs", fmt::format("{} mini-epochs ({} steps) exceed the stage's {} steps", e.constant_epochs,
                                          st.constant_steps, st.steps));
  st.lr_init = e.lr_init;
  st.lr_final = e.lr_final;
  st.warmup_steps = e.warmup_steps;
  st.lr_mult = e.lr_mult;
  return st;
}

// Reads the `stages` list; each entry inherits what it does not set from the run's sections.
// The whole run's token count must fit 64 bits too.
std::vector<Stage> read_stages(const YAML::Node& list, const std::string& file, const RunConfig& c) {
  if (!list.IsSequence() || list.size() == 0) {
    throw ConfigError(fmt::format("{}:{}: stages: expected a non-empty list of stage mappings", file,
                                  list.Mark().line + 1));
  }
  std::vector<Stage> out;
  int64_t run_tokens = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    YamlSection s(list[i], file, fmt::format("stages[{}]", i));
    StageEntry e = inherited_stage(c);
    read_fields(stage_fields(), s, e);
    s.finish();
    out.push_back(resolve_stage(e, s, c));
    const std::string length_key = e.steps > 0 ? "steps" : e.tokens > 0 ? "tokens" : "epoch_count";
    if (__builtin_add_overflow(run_tokens, stage_tokens(out.back(), s, length_key), &run_tokens))
      s.fail(length_key, "the stages' tokens together overflow the run's 64-bit token count");
  }
  return out;
}

// The run without `stages:`: one stage from data.ctx_len and the train/optimizer sections.
Stage implicit_stage(const RunConfig& c, const YamlSection& train, const YamlSection& opt) {
  Stage st;
  st.ctx_len = c.data.ctx_len;
  st.micro_batch = c.train.micro_batch;
  st.grad_accum = c.train.grad_accum;
  st.segment_len = c.train.segment_len;
  check_batch(c, st, train, "micro_batch");
  const int64_t spe = c.train.epoch_samples / st.global_batch();
  if (c.optimizer.constant_epochs > c.train.epoch_count)
    opt.fail("constant_epochs", fmt::format("{} exceeds train.epoch_count = {}", c.optimizer.constant_epochs,
                                            c.train.epoch_count));
  st.steps = epochs_to_steps(c.train.epoch_count, spe, train, "epoch_count");
  stage_tokens(st, train, "epoch_count");
  st.constant_steps = c.optimizer.constant_epochs * spe;  // at most steps
  st.lr_init = c.optimizer.lr_init;
  st.lr_final = c.optimizer.lr_final;
  st.warmup_steps = c.optimizer.warmup_steps;
  st.lr_mult = c.optimizer.lr_mult;
  return st;
}

// What a resolved stage writes back: its length in steps, E_c in mini-epochs.
StageEntry entry_of(const Stage& s, int64_t steps_per_epoch) {
  StageEntry e;
  e.ctx_len = s.ctx_len;
  e.micro_batch = s.micro_batch;
  e.grad_accum = s.grad_accum;
  e.segment_len = s.segment_len;
  e.steps = s.steps;
  e.lr_init = s.lr_init;
  e.lr_final = s.lr_final;
  e.warmup_steps = s.warmup_steps;
  e.constant_epochs = s.constant_steps / steps_per_epoch;
  e.lr_mult = s.lr_mult;
  return e;
}

// ---- checks needing several sections, and the thread cap -------------------------------------------

// Device constraints known before start (device: auto is checked again once resolved).
void check_device(const RunConfig& c, const YamlSection& train) {
  if (c.train.device == DeviceKind::cuda && c.model.n_embd % 32 != 0)
    train.fail("device", fmt::format("cuda needs model.n_embd to be a multiple of 32, got {}", c.model.n_embd));
}

// A given validation section names its held-out data exactly once.
void check_validation(const ValidationConfig& v, const YamlSection& section, const YamlSection& top) {
  if (!v.path.empty() && v.split_tokens > 0)
    section.fail("split_tokens", "give either path (a held-out file) or split_tokens (the last tokens of data.path), "
                                 "not both");
  if (!v.enabled())
    top.fail("validation", "no held-out data: give path (a held-out token or .txt file) or split_tokens (the last N "
                           "tokens of data.path, never drawn for training)");
}

// More than 4 threads per core only oversubscribes (OpenMP would try to start them all): capped.
void cap_threads(RunConfig& c, const YamlSection& train) {
  const int64_t cores = std::thread::hardware_concurrency();
  if (cores == 0 || c.train.threads <= 4 * cores) return;
  c.warnings.push_back(fmt::format("{}: {} is more than 4 threads per core ({} cores here); using {}",
                                   train.where("threads"), c.train.threads, cores, 4 * cores));
  c.train.threads = 4 * cores;
}

// ---- the YAML tree -------------------------------------------------------------------------------

// Flattens a YAML tree into "a.b.0.c" -> scalar text.
void flatten(const YAML::Node& n, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n) flatten(kv.second, prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar(), out);
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) flatten(n[i], prefix + "." + std::to_string(i), out);
  } else {
    out[prefix] = n.IsNull() ? "" : n.Scalar();
  }
}

void apply_override(YAML::Node& root, const Override& o, const std::string& file) {
  std::vector<std::string> parts;
  std::stringstream ss(o.path);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  YAML::Node value = load_yaml(o.value, "--set " + o.path);
  if (value.IsNull())
    throw ConfigError(fmt::format("{}: --set {}={}: a null value would remove the setting; give a value "
                                  "(\"\" for an empty text) or leave the key out", file, o.path, o.value));
  // Walk with fresh handles (yaml-cpp node assignment rebinds, it does not copy into the tree).
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node cur = chain.back();
    const bool index = !parts[i].empty() && parts[i].find_first_not_of("0123456789") == std::string::npos;
    if (index && cur.IsSequence()) {
      const size_t k = std::stoul(parts[i]);
      if (k >= cur.size())
        throw ConfigError(fmt::format("{}: --set {}: index {} is past the end of the list ({} entries)", file,
                                      o.path, k, cur.size()));
      chain.push_back(cur[k]);
    } else {
      if (!cur.IsMap() && !cur.IsNull() && cur.IsDefined())
        throw ConfigError(fmt::format("{}: --set {}: '{}' is not a mapping", file, o.path, parts[i]));
      chain.push_back(cur[parts[i]]);
    }
  }
  chain.back()[parts.back()] = value;
}

// Unknown sections first, so a misspelt one is not reported as a missing one.
void reject_unknown_sections(const YAML::Node& root, const std::string& file) {
  static const std::vector<std::string> sections{"model", "data",       "train",  "optimizer", "checkpoint",
                                                 "log",   "validation", "sample", "stages"};
  for (const auto& kv : root) {
    if (std::find(sections.begin(), sections.end(), kv.first.Scalar()) == sections.end())
      throw ConfigError(fmt::format("{}:{}: {}: unknown section (known: {})", file, kv.first.Mark().line + 1,
                                    kv.first.Scalar(), fmt::format("{}", fmt::join(sections, ", "))));
  }
}

YAML::Node section_node(YamlSection& top, const std::string& name, bool required) {
  if (required && !top.has(name)) top.fail(name, "missing section");
  return top.child(name);
}

// A section read whole into `obj` (an absent optional one leaves it at its defaults).
template <typename S>
void read_section(YamlSection& top, const std::string& name, const Fields<S>& fields, S& obj, bool required,
                  bool has_stages = false) {
  YamlSection s(section_node(top, name, required), top.file(), name);
  read_fields(fields, s, obj, has_stages);
  s.finish();
}

}  // namespace

Override parse_override(const std::string& text) {
  const auto eq = text.find('=');
  const auto bad = [&](const std::string& why) {
    return ConfigError("--set '" + text + "': " + why + " (expected section.key=value, e.g. train.max_steps=100)");
  };
  if (eq == std::string::npos) throw bad("no '='");
  Override o{text.substr(0, eq), text.substr(eq + 1)};
  if (o.path.find('.') == std::string::npos) throw bad("the key needs a section");
  if (o.path.front() == '.' || o.path.back() == '.' || o.path.find("..") != std::string::npos) throw bad("empty key part");
  if (o.value.find_first_not_of(" \t") == std::string::npos)
    throw bad("empty value, which would remove the setting (write key=\"\" for an empty text)");
  return o;
}

RunConfig parse_run_config(const std::string& yaml, const std::string& file, const std::vector<Override>& overrides) {
  YAML::Node root = load_yaml(yaml, file);
  if (!root.IsMap()) throw ConfigError(file + ": expected a mapping of sections (model, data, train, optimizer, ...)");
  for (const auto& o : overrides) apply_override(root, o, file);
  reject_unknown_sections(root, file);

  YamlSection top(root, file, "");
  RunConfig c;
  c.file = file;
  c.explicit_stages = top.has("stages");
  const YAML::Node stages_node = top.child("stages");
  c.model = model_config_from_yaml(section_node(top, "model", true), file);
  read_section(top, "data", data_fields(), c.data, true, c.explicit_stages);
  YamlSection train(section_node(top, "train", true), file, "train");
  read_fields(train_fields(), train, c.train, c.explicit_stages);
  train.finish();
  YamlSection opt(section_node(top, "optimizer", true), file, "optimizer");
  read_fields(optimizer_fields(), opt, c.optimizer);
  opt.finish();
  c.checkpoint.dir = c.train.run_dir + "/checkpoints";
  read_section(top, "checkpoint", checkpoint_fields(), c.checkpoint, false);
  read_section(top, "log", log_fields(), c.log, false);
  if (top.has("validation")) {
    YamlSection v(section_node(top, "validation", false), file, "validation");
    read_fields(validation_fields(), v, c.validation);
    v.finish();
    check_validation(c.validation, v, top);
  }
  read_section(top, "sample", sample_fields(), c.sample, false);

  if (c.explicit_stages)
    c.stages = read_stages(stages_node, file, c);
  else
    c.stages.push_back(implicit_stage(c, train, opt));
  check_device(c, train);
  cap_threads(c, train);
  top.finish();
  return c;
}

RunConfig load_run_config(const std::string& file, const std::vector<Override>& overrides) {
  return parse_run_config(read_config_text(file), file, overrides);
}

int64_t RunConfig::total_steps() const {
  int64_t n = 0;
  for (const auto& s : stages) n += s.steps;
  return n;
}

std::string RunConfig::to_yaml() const {
  YAML::Emitter e;
  e << YAML::BeginMap;
  const auto section = [&e](const char* name, const auto& fields, const auto& obj) {
    e << YAML::Key << name << YAML::Value;
    write_fields(e, fields, obj);
  };
  section("model", model_fields(), model);
  section("data", data_fields(), data);
  section("train", train_fields(), train);
  section("optimizer", optimizer_fields(), optimizer);
  section("checkpoint", checkpoint_fields(), checkpoint);
  section("log", log_fields(), log);
  if (validation.enabled()) section("validation", validation_fields(), validation);
  section("sample", sample_fields(), sample);
  if (explicit_stages) {
    e << YAML::Key << "stages" << YAML::Value << YAML::BeginSeq;
    for (const auto& s : stages) write_fields(e, stage_fields(), entry_of(s, steps_per_epoch(s)));
    e << YAML::EndSeq;
  }
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

std::string unsafe_resume_change(const RunConfig& saved, const RunConfig& current) {
  std::map<std::string, std::string> a, b;
  flatten(YAML::Load(saved.to_yaml()), "", a);
  flatten(YAML::Load(current.to_yaml()), "", b);
  const size_t saved_stages = saved.explicit_stages ? saved.stages.size() : 0;
  const auto safe_change = [&](const std::string& key) {
    // "section.key" of "section.key.sub" (betas.0, lr_mult.time_decay); "stages.key" of "stages.N.key".
    std::string field = key;
    if (key.rfind("stages.", 0) == 0) {
      if (!saved.explicit_stages || !current.explicit_stages) return false;
      // Stages appended after the saved ones only lengthen the run.
      if (std::stoul(key.substr(7)) >= saved_stages) return true;
      const auto dot = key.find('.', 7);
      field = dot == std::string::npos ? "stages" : "stages" + key.substr(dot);
    }
    const auto second_dot = field.find('.', field.find('.') + 1);
    const auto rule = resume_rules().find(field.substr(0, second_dot));
    return rule != resume_rules().end() && rule->second == OnResume::safe;
  };
  for (const auto& [k, v] : a) {
    const auto it = b.find(k);
    const std::string now = it == b.end() ? "(absent)" : it->second;
    if (now != v && !safe_change(k)) return fmt::format("{}: {} -> {}", k, v, now);
  }
  for (const auto& [k, v] : b)
    if (!a.count(k) && !safe_change(k)) return fmt::format("{}: (absent) -> {}", k, v);
  // The segment length is a memory knob only while the gradient crosses the boundaries exactly;
  // truncated gradients are cut at them, so moving them changes the run.
  if (current.train.segment_grad == SegmentGrad::truncated) {
    for (size_t i = 0; i < std::min(saved.stages.size(), current.stages.size()); ++i)
      if (saved.stages[i].segment() != current.stages[i].segment())
        return fmt::format("stage {} segment length with train.segment_grad: truncated: {} -> {}", i,
                           saved.stages[i].segment(), current.stages[i].segment());
  }
  return "";
}

}  // namespace rwkv::trainer
