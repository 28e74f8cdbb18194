#pragma once
// The whole YAML run config of `rwkv train`, read and validated once into typed structs before
// any work starts. Every problem is a ConfigError naming file:line, the field and the expected
// form (trainer/config/yaml_section.h); unknown and duplicate keys are rejected. Each section is
// one table of fields (run_config.cpp, trainer/config/field_table.h) that drives reading with
// defaults, validation, to_yaml and resume safety, so a field is declared once: its default is
// the initialiser below.
//
// Sections: model (trainer/config/model_config_yaml.h), data, train, optimizer, checkpoint, log,
// sample, an optional validation, and an optional list `stages` for progressive context extension (paper §5.2,
// trainer/README.md "Context extension"). Without `stages`, the run is one stage built from
// data.ctx_len and the train/optimizer sections; with it, each stage inherits every field it does
// not set from those sections.
//
// Terms (trainer/README.md "Optimizer and schedule"): a step is one optimizer update of
// global_batch = micro_batch·grad_accum samples of ctx_len+1 tokens; a mini-epoch is
// train.epoch_samples (40320) samples. Step, sample and token counts of the run must fit 64 bits.
//
// Reals that the optimizer computes with (learning rates, eps, weight decay, multipliers, l2wrap,
// the clipping norm) must be representable in fp32, the training dtype of the weights and Adam
// (bf16 has the same range): 0 where allowed, else between 1.2e-38 and 3.4e38.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/log/log.h"
#include "rwkv/model_config.h"
#include "trainer/optim/adam_config.h"
#include "trainer/optim/lr_mult.h"
#include "trainer/optim/lr_schedule.h"

namespace rwkv::trainer {

enum class SamplerKind { magic_prime, random };
enum class Precision { auto_, fp32, bf16 };   // auto: bf16 on CUDA, fp32 on CPU
enum class DeviceKind { auto_, cpu, cuda };   // auto: CUDA when torch sees one
// auto: continue from the newest complete checkpoint; never: start at step 0, refused when
// checkpoint.dir holds checkpoints; restart: move an earlier run's checkpoints and metrics.jsonl
// into <run_dir>/previous-N/, then start at step 0 (trainer/train/run_directory.h).
enum class ResumeMode { auto_, never, restart };
// How the gradient crosses segment boundaries (train.segment_len, trainer/train/segments.h):
// exact backpropagates through the carried state (the unsegmented gradient, up to rounding);
// truncated cuts it at each boundary (RWKV-infctx-trainer's truncated BPTT: cheaper, different).
enum class SegmentGrad { exact, truncated };

struct DataConfig {
  std::string path;                 // token file from `rwkv prep`: binidx prefix or .h5 (picked by name)
  std::string tokenizer = "byte";   // "byte" or a tokenizer.json: encodes sample.prompt, decodes output
  SamplerKind sampler = SamplerKind::magic_prime;
  int64_t ctx_len = 0;
};

struct TrainConfig {
  std::string run_dir;              // metrics.jsonl, config.yaml, checkpoints/
  int64_t micro_batch = 0;
  int64_t grad_accum = 1;
  int64_t epoch_samples = 40320;    // samples per mini-epoch
  int64_t epoch_count = 0;          // mini-epochs to the end of the LR schedule (8043: one Pile epoch)
  int64_t max_steps = 0;            // stop after this many steps in total (0: at the end of the last stage)
  uint64_t seed = 0;                // init and random sampler
  Precision precision = Precision::auto_;
  DeviceKind device = DeviceKind::auto_;
  int64_t nan_skip_limit = 10;      // this many non-finite steps in a row stop the run
  int64_t threads = 0;              // CPU intra-op threads (0: LibTorch's default); more than
                                    // 4 per core is capped there, with a warning
  // Recompute each block's forward in backward, keeping only block inputs (rwkv/block_recompute.h):
  // activation memory of about one block instead of L, for a third more compute. Same gradients.
  bool activation_checkpointing = false;
  // Process each sample in segments of this many tokens, carrying every block's RNN state from one
  // to the next (trainer/train/segments.h): activation memory of one segment at any ctx_len.
  // 0: the whole sample at once. Each stage may set its own.
  int64_t segment_len = 0;
  SegmentGrad segment_grad = SegmentGrad::exact;
  // Several ranks (torchrun/Slurm/MPI): global batch = micro_batch·grad_accum whatever the world
  // size W; each rank runs grad_accum/W micro-batches of micro_batch samples per step (W must
  // divide grad_accum), so a run resumes on another W unchanged.
  double dist_timeout_s = 600;      // a collective that takes longer (a rank died or hung) fails the run
  int64_t zero_stage = 0;           // 0: replicated Adam; 1: Adam moments sharded; 2: gradients too (ZeRO)
  double grad_bucket_mb = 25;       // size of the flat fp32 buckets gradients are reduced in
  bool overlap_grad_reduce = true;  // zero_stage 0: reduce buckets during the last backward
};

// The `optimizer:` section: Adam's own config (betas, eps, weight_decay; YAML `betas: [b1, b2]`),
// the schedule in mini-epochs, clipping, multipliers and the L2Wrap factor.
struct OptimizerConfig : AdamConfig {
  double lr_init = 0, lr_final = 0;  // lr_final defaults to lr_init (a constant rate)
  int64_t constant_epochs = 0;      // E_c: mini-epochs at lr_init before the exponential decay
  int64_t warmup_steps = 0;
  double grad_clip = 1.0;           // global L2 norm; 0 disables
  // trainer/optim/lr_mult.h. A given map is merged into these defaults: each given key replaces
  // every default key it matches ("time_*" replaces both, "time_decay: 4" keeps time_first 3×);
  // write `time_first: 1` to drop one. A key that matches no parameter of the model is an error.
  LrMult lr_mult = {{"time_decay", 2.0}, {"time_first", 3.0}};
  double l2wrap = 1e-4;             // PaLM auxiliary factor (trainer/README.md "Loss"); 0 disables
};

struct CheckpointConfig {
  std::string dir;                  // default: <run_dir>/checkpoints
  int64_t every_steps = 1000;
  int64_t keep = 3;
  // How long the other ranks wait while rank 0 writes a checkpoint (a big one on a slow disk takes
  // minutes); a rank 0 that died or froze is noticed sooner, within train.dist_timeout_s.
  double write_timeout_s = 1800;
  // Write in the background (trainer/train/checkpointer.h): the loop is blocked only while the
  // state is copied to host memory; off, every save returns once COMPLETE is on disk.
  bool async = true;
  ResumeMode resume = ResumeMode::auto_;
  std::string init_from;            // a checkpoint directory or a .pth: weights to start from
};

// Which ranks write their messages to the console; every rank writes its log file
// (trainer/README.md "Logs").
enum class LogConsole { rank0, all, none };

struct LogConfig {
  int64_t every_steps = 10;
  double peak_tflops = 0;           // device peak for MFU (H100 bf16 dense: 989); 0: MFU not shown
  bool peak_auto = false;           // `peak_tflops: auto`: found at startup (trainer/bench/flops_peak.h)
  logging::Level level = logging::Level::info;  // messages below it are dropped (common/log/log.h)
  LogConsole console = LogConsole::rank0;
  double file_max_mb = 64;          // a log file is rotated when it would pass this many MiB
  int64_t file_keep = 5;            // rotated files kept (train.1.log … train.5.log)
};

// Held-out evaluation during the run (trainer/train/validation.h): loss, perplexity and bits per
// byte over fixed windows at the stage's ctx_len, every `every_steps` and at the end of each
// stage. The held-out tokens are either a file of their own (`path`) or the training file's last
// `split_tokens` tokens, which the sampler then never draws and which leave the order of the rest
// unchanged (data/README.md "Held-out split"). The section, when given, names exactly one of
// them; without it there is no validation. Only split_tokens changes the training itself.
struct ValidationConfig {
  std::string path;                 // binidx prefix, .h5/.hdf5, or .txt (tokenized with data.tokenizer)
  int64_t split_tokens = 0;         // or: the last N tokens of data.path
  int64_t max_tokens = 0;           // only the first N held-out tokens are scored (0: all)
  int64_t every_steps = 0;          // 0: only at the end of each stage
  int64_t batch = 8;                // windows per forward pass

  bool enabled() const { return !path.empty() || split_tokens > 0; }
};

struct SampleConfig {               // text printed after training (the demo)
  std::string prompt;
  int64_t length = 0;               // tokens to generate; 0: none
  double temperature = 1.0;         // 0: greedy
};

// One stage of the run, fully resolved (what the loop consumes): its LR schedule (the length
// `steps` included, so learning_rate takes a Stage as it is), its batch shape and multipliers.
// In YAML a stage gives its length as one of steps, tokens (rounded up to whole steps) or
// epoch_count (mini-epochs), and E_c as constant_epochs (its own, default 0); its lr_mult merges
// into the optimizer's as that one does into the defaults.
struct Stage : LrSchedule {
  int64_t ctx_len = 0;
  int64_t micro_batch = 0, grad_accum = 1;
  int64_t segment_len = 0;          // train.segment_len unless the stage sets its own; 0: whole samples
  LrMult lr_mult;

  int64_t global_batch() const { return micro_batch * grad_accum; }
  // Tokens per segment: ctx_len when segment_len is 0 or not below it (one segment).
  int64_t segment() const { return segment_len > 0 && segment_len < ctx_len ? segment_len : ctx_len; }
};

struct RunConfig {
  std::string file;                 // where it was read from (labels messages)
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimizerConfig optimizer;
  CheckpointConfig checkpoint;
  LogConfig log;
  ValidationConfig validation;
  SampleConfig sample;
  std::vector<Stage> stages;        // at least one
  bool explicit_stages = false;     // the YAML had a `stages:` list
  // Input read in its reasonable sense but worth telling ("file:line: train.threads: ..."): the
  // caller prints them.
  std::vector<std::string> warnings;

  int64_t total_steps() const;      // over all stages
  int64_t steps_per_epoch(const Stage& s) const { return train.epoch_samples / s.global_batch(); }

  // The effective config (every default filled in) as YAML, in the tables' order: saved in the
  // run directory and in every checkpoint. Reading it back gives the same RunConfig. (There is no
  // config hash: resuming compares the checkpoint's whole config field by field, below.)
  std::string to_yaml() const;
};

// One `--set section.key=value` (or `stages.1.ctx_len=4096`): the value is parsed as YAML. An
// empty or null value is an error (it would remove the setting); `key=""` is an empty text.
struct Override {
  std::string path, value;
};
Override parse_override(const std::string& text);  // throws ConfigError on a malformed one

// Reads `file`, applies the overrides to the YAML tree, validates. Throws ConfigError.
RunConfig load_run_config(const std::string& file, const std::vector<Override>& overrides = {});
// The same from YAML text already in memory (`file` labels messages).
RunConfig parse_run_config(const std::string& yaml, const std::string& file,
                           const std::vector<Override>& overrides = {});

// Fields whose change keeps a resumed run exact (each field's table entry says so: cadences, caps,
// paths, how the work is spread over threads and ranks, what is printed; and stages appended
// after the existing ones). Returns the first other field whose value differs, as
// "train.micro_batch: 8 -> 16", or "" when resuming `saved` under `current` is safe.
std::string unsafe_resume_change(const RunConfig& saved, const RunConfig& current);

}  // namespace rwkv::trainer
