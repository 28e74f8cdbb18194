#pragma once
// The subcommands of the `rwkv` binary. Each lives in its own cmd_<name>.cpp and registers
// itself on the CLI11 app; main.cpp calls the registrations in the order `rwkv --help` shows.
#include <CLI/CLI.hpp>

namespace rwkv::cli {

// `rwkv env`: LibTorch version, threads, CUDA build and visible devices.
void add_env_command(CLI::App& app);
// `rwkv prep`: raw text (.jsonl, .jsonl.zst, .txt) → binidx or HDF5 token files.
void add_prep_command(CLI::App& app);

// `rwkv info CONFIG`: architecture, tensors with init rules, parameter count, FLOPs, memory.
void add_info_command(CLI::App& app);
// `rwkv train CONFIG [--resume | --restart] [--set k=v]...`: a pretraining run from YAML (trainer/train/train_loop.h).
void add_train_command(CLI::App& app);
// `rwkv bench wkv|train|generate`: WKV op, training step (MFU) and generation figures (trainer/bench/bench.h).
void add_bench_command(CLI::App& app);
// `rwkv export`: weights → .pth (reference keys) / Hugging Face folder / safetensors.
void add_export_command(CLI::App& app);
// `rwkv import`: released .pth or HF folder → a weights file checked against a config.
void add_import_command(CLI::App& app);
// `rwkv generate MODEL --prompt TEXT`: RNN-mode text generation, speed and memory per token.
void add_generate_command(CLI::App& app);
// `rwkv eval MODEL --data FILE`: loss, perplexity, bits per byte, per-token log-probabilities.
void add_eval_command(CLI::App& app);
// `rwkv plan CONFIG --gpus N --gpu-mem GB`: per-GPU memory under DDP / ZeRO-1 / ZeRO-2.
void add_plan_command(CLI::App& app);

}  // namespace rwkv::cli
