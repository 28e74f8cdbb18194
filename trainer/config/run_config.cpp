#include "trainer/config/run_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "rwkv/yaml_section.h"

namespace rwkv::trainer {
namespace {

// ---- enums <-> text --------------------------------------------------------------------------

template <typename E>
struct EnumNames;
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
struct EnumNames<ResumeMode> {
  static constexpr std::pair<ResumeMode, const char*> v[] = {{ResumeMode::auto_, "auto"},
                                                             {ResumeMode::never, "never"}};
};

template <typename E>
std::string name_of(E e) {
  for (const auto& [value, name] : EnumNames<E>::v)
    if (value == e) return name;
  return "?";
}

template <typename E>
E read_enum(YamlSection& s, const std::string& key, E fallback) {
  std::string choices;
  for (const auto& [value, name] : EnumNames<E>::v) choices += (choices.empty() ? "" : "|") + std::string(name);
  const auto text = s.optional<std::string>(key, name_of(fallback), "one of " + choices);
  for (const auto& [value, name] : EnumNames<E>::v)
    if (text == name) return value;
  s.fail(key, "expected one of " + choices + ", got '" + text + "'");
}

// ---- field readers ---------------------------------------------------------------------------

const auto positive_int = [](const int64_t& v) { return v > 0; };
const auto non_negative_int = [](const int64_t& v) { return v >= 0; };
const auto positive_real = [](const double& v) { return std::isfinite(v) && v > 0; };
const auto non_negative_real = [](const double& v) { return std::isfinite(v) && v >= 0; };

LrMult read_lr_mult(YamlSection& parent, const std::string& key, const LrMult& fallback) {
  if (!parent.has(key)) {
    parent.child(key);
    return fallback;
  }
  const YAML::Node node = parent.child(key);
  if (!node.IsMap()) parent.fail(key, "expected a mapping of parameter-name suffix: multiplier");
  LrMult out;
  YamlSection s(node, parent.file(), "lr_mult");
  for (const auto& kv : node) {
    const std::string name = kv.first.Scalar();
    out[name] = s.required<double>(name, "a positive multiplier", positive_real);
  }
  s.finish();
  return out;
}

DataConfig read_data(const YAML::Node& node, const std::string& file, bool ctx_required) {
  YamlSection s(node, file, "data");
  DataConfig d;
  d.path = s.required<std::string>("path", "a token file from `rwkv prep` (binidx prefix or .h5)");
  d.tokenizer = s.optional<std::string>("tokenizer", "byte", "'byte' or a tokenizer JSON file");
  d.sampler = read_enum(s, "sampler", SamplerKind::magic_prime);
  d.ctx_len = ctx_required
                  ? s.required<int64_t>("ctx_len", "a positive integer (tokens per sample)", positive_int)
                  : s.optional<int64_t>("ctx_len", 0, "a positive integer (tokens per sample)", positive_int);
  s.finish();
  return d;
}

TrainConfig read_train(YamlSection& s, bool epoch_count_required) {
  TrainConfig t;
  t.run_dir = s.required<std::string>("run_dir", "a directory for checkpoints, metrics and the config");
  t.micro_batch = s.required<int64_t>("micro_batch", "a positive integer (samples per forward)", positive_int);
  t.grad_accum = s.optional<int64_t>("grad_accum", 1, "a positive integer", positive_int);
  t.epoch_samples = s.optional<int64_t>("epoch_samples", 40320, "a positive integer (samples per mini-epoch)", positive_int);
  const std::string ec = "a positive integer (mini-epochs to the end of the LR schedule)";
  t.epoch_count = epoch_count_required ? s.required<int64_t>("epoch_count", ec, positive_int)
                                       : s.optional<int64_t>("epoch_count", 0, ec, non_negative_int);
  t.max_steps = s.optional<int64_t>("max_steps", 0, "a non-negative integer (0: no cap)", non_negative_int);
  t.seed = s.optional<uint64_t>("seed", 0, "a non-negative integer");
  t.precision = read_enum(s, "precision", Precision::auto_);
  t.device = read_enum(s, "device", DeviceKind::auto_);
  t.nan_skip_limit = s.optional<int64_t>("nan_skip_limit", 10, "a positive integer", positive_int);
  t.threads = s.optional<int64_t>("threads", 0, "a non-negative integer (0: LibTorch's default)", non_negative_int);
  t.activation_checkpointing = s.optional<bool>("activation_checkpointing", false, "true or false");
  t.dist_timeout_s = s.optional<double>("dist_timeout_s", 600, "a positive number of seconds", positive_real);
  t.zero_stage = s.optional<int64_t>("zero_stage", 0, "0, 1 or 2", [](const int64_t& v) { return v >= 0 && v <= 2; });
  t.grad_bucket_mb = s.optional<double>("grad_bucket_mb", 25, "a positive size in MiB", positive_real);
  t.overlap_grad_reduce = s.optional<bool>("overlap_grad_reduce", true, "true or false");
  return t;
}

OptimizerConfig read_optimizer(YamlSection& s) {
  OptimizerConfig o;
  o.lr_init = s.required<double>("lr_init", "a positive learning rate", positive_real);
  o.lr_final = s.optional<double>("lr_final", o.lr_init, "a positive learning rate <= lr_init", positive_real);
  if (o.lr_final > o.lr_init) s.fail("lr_final", fmt::format("must not exceed lr_init = {}", o.lr_init));
  o.constant_epochs = s.optional<int64_t>("constant_epochs", 0, "a non-negative integer (E_c)", non_negative_int);
  o.warmup_steps = s.optional<int64_t>("warmup_steps", 0, "a non-negative integer", non_negative_int);
  if (s.has("betas")) {
    const auto b = s.required<std::vector<double>>("betas", "[beta1, beta2] with 0 <= beta < 1",
                                                   [](const std::vector<double>& v) {
                                                     return v.size() == 2 && v[0] >= 0 && v[0] < 1 && v[1] >= 0 && v[1] < 1;
                                                   });
    o.beta1 = b[0];
    o.beta2 = b[1];
  } else {
    s.child("betas");
  }
  o.eps = s.optional<double>("eps", 1e-8, "a positive number", positive_real);
  o.weight_decay = s.optional<double>("weight_decay", 0.0, "a non-negative number", non_negative_real);
  o.grad_clip = s.optional<double>("grad_clip", 1.0, "a non-negative global norm (0: off)", non_negative_real);
  o.lr_mult = read_lr_mult(s, "lr_mult", o.lr_mult);
  o.l2wrap = s.optional<double>("l2wrap", 1e-4, "a non-negative factor (0: off)", non_negative_real);
  return o;
}

// Reads the `stages` list; each entry inherits what it does not set from the run's sections.
std::vector<Stage> read_stages(const YAML::Node& list, const std::string& file, const RunConfig& c) {
  if (!list.IsSequence() || list.size() == 0) {
    throw ConfigError(fmt::format("{}:{}: stages: expected a non-empty list of stage mappings", file,
                                  list.Mark().line + 1));
  }
  std::vector<Stage> out;
  for (size_t i = 0; i < list.size(); ++i) {
    YamlSection s(list[i], file, fmt::format("stages[{}]", i));
    Stage st;
    st.ctx_len = s.optional<int64_t>("ctx_len", c.data.ctx_len, "a positive integer", positive_int);
    if (st.ctx_len <= 0) s.fail("ctx_len", "missing; expected a positive integer (or data.ctx_len)");
    st.micro_batch = s.optional<int64_t>("micro_batch", c.train.micro_batch, "a positive integer", positive_int);
    st.grad_accum = s.optional<int64_t>("grad_accum", c.train.grad_accum, "a positive integer", positive_int);
    st.lr_init = s.optional<double>("lr_init", c.optimizer.lr_init, "a positive learning rate", positive_real);
    st.lr_final = s.optional<double>("lr_final", s.has("lr_init") ? st.lr_init : c.optimizer.lr_final,
                                     "a positive learning rate <= lr_init", positive_real);
    if (st.lr_final > st.lr_init) s.fail("lr_final", fmt::format("must not exceed lr_init = {}", st.lr_init));
    st.warmup_steps = s.optional<int64_t>("warmup_steps", c.optimizer.warmup_steps, "a non-negative integer", non_negative_int);
    const int64_t ec = s.optional<int64_t>("constant_epochs", 0, "a non-negative integer (E_c)", non_negative_int);
    st.lr_mult = read_lr_mult(s, "lr_mult", c.optimizer.lr_mult);

    const int64_t spe = c.train.epoch_samples / st.global_batch();
    const int n_len = s.has("steps") + s.has("tokens") + s.has("epoch_count");
    if (n_len != 1) s.fail("steps", "give exactly one of steps, tokens or epoch_count for the stage's length");
    if (s.has("steps")) {
      st.steps = s.required<int64_t>("steps", "a positive integer", positive_int);
    } else if (s.has("tokens")) {
      const int64_t tokens = s.required<int64_t>("tokens", "a positive token count", positive_int);
      const int64_t per_step = st.global_batch() * st.ctx_len;
      st.steps = (tokens + per_step - 1) / per_step;
    } else {
      st.steps = s.required<int64_t>("epoch_count", "a positive integer (mini-epochs)", positive_int) * spe;
    }
    s.child("steps"), s.child("tokens"), s.child("epoch_count");
    st.constant_steps = ec * spe;
    if (st.constant_steps > st.steps)
      s.fail("constant_epochs", fmt::format("{} mini-epochs ({} steps) exceed the stage's {} steps", ec,
                                            st.constant_steps, st.steps));
    s.finish();
    out.push_back(st);
  }
  return out;
}

// Cross-field checks on one stage's batch: labelled with the stage, or train.micro_batch.
void check_batch(const RunConfig& c, const Stage& st, YamlSection& where, const std::string& key) {
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

// ---- YAML output -------------------------------------------------------------------------------

std::string real(double v) { return fmt::format("{}", v); }

void put_lr_mult(YAML::Emitter& e, const LrMult& m) {
  e << YAML::Key << "lr_mult" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : m) e << YAML::Key << k << YAML::Value << real(v);
  e << YAML::EndMap;
}

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

YAML::Node load_yaml_text(const std::string& yaml, const std::string& file) {
  try {
    return YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: invalid YAML: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

void apply_override(YAML::Node& root, const Override& o, const std::string& file) {
  std::vector<std::string> parts;
  std::stringstream ss(o.path);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  YAML::Node value = load_yaml_text(o.value, "--set " + o.path);
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
  return o;
}

RunConfig parse_run_config(const std::string& yaml, const std::string& file, const std::vector<Override>& overrides) {
  YAML::Node root = load_yaml_text(yaml, file);
  if (!root.IsMap()) throw ConfigError(file + ": expected a mapping of sections (model, data, train, optimizer, ...)");
  for (const auto& o : overrides) apply_override(root, o, file);

  // Unknown sections first, so a misspelt one is not reported as a missing one.
  static const std::vector<std::string> sections{"model", "data", "train", "optimizer", "checkpoint", "log", "sample", "stages"};
  for (const auto& kv : root) {
    if (std::find(sections.begin(), sections.end(), kv.first.Scalar()) == sections.end())
      throw ConfigError(fmt::format("{}:{}: {}: unknown section (known: {})", file, kv.first.Mark().line + 1,
                                    kv.first.Scalar(), fmt::format("{}", fmt::join(sections, ", "))));
  }
  YamlSection top(root, file, "");
  RunConfig c;
  c.file = file;
  if (!top.has("model")) top.fail("model", "missing section");
  c.model = model_config_from_yaml(top.child("model"), file);
  c.explicit_stages = top.has("stages");
  const YAML::Node stages_node = top.child("stages");

  if (!top.has("data")) top.fail("data", "missing section");
  c.data = read_data(top.child("data"), file, !c.explicit_stages);

  if (!top.has("train")) top.fail("train", "missing section");
  YamlSection train(top.child("train"), file, "train");
  c.train = read_train(train, !c.explicit_stages);

  if (!top.has("optimizer")) top.fail("optimizer", "missing section");
  YamlSection opt(top.child("optimizer"), file, "optimizer");
  c.optimizer = read_optimizer(opt);

  {
    YamlSection s(top.child("checkpoint"), file, "checkpoint");
    auto& k = c.checkpoint;
    k.dir = s.optional<std::string>("dir", c.train.run_dir + "/checkpoints", "a directory");
    k.every_steps = s.optional<int64_t>("every_steps", 1000, "a positive integer", positive_int);
    k.keep = s.optional<int64_t>("keep", 3, "a positive integer (checkpoints kept)", positive_int);
    k.resume = read_enum(s, "resume", ResumeMode::auto_);
    k.init_from = s.optional<std::string>("init_from", "", "a checkpoint directory or a .pth file");
    s.finish();
  }
  {
    YamlSection s(top.child("log"), file, "log");
    c.log.every_steps = s.optional<int64_t>("every_steps", 10, "a positive integer", positive_int);
    c.log.peak_auto = s.has("peak_tflops") && s.child("peak_tflops").IsScalar() && s.child("peak_tflops").Scalar() == "auto";
    if (!c.log.peak_auto)
      c.log.peak_tflops = s.optional<double>("peak_tflops", 0.0,
                                             "a non-negative number (TFLOP/s; 0: no MFU) or auto (found at startup)",
                                             non_negative_real);
    s.finish();
  }
  {
    YamlSection s(top.child("sample"), file, "sample");
    c.sample.prompt = s.optional<std::string>("prompt", "", "a text");
    c.sample.length = s.optional<int64_t>("length", 0, "a non-negative integer", non_negative_int);
    c.sample.temperature = s.optional<double>("temperature", 1.0, "a non-negative number (0: greedy)", non_negative_real);
    s.finish();
  }

  if (c.explicit_stages) {
    c.stages = read_stages(stages_node, file, c);
    for (size_t i = 0; i < c.stages.size(); ++i) {
      YamlSection s(stages_node[i], file, fmt::format("stages[{}]", i));
      check_batch(c, c.stages[i], s, s.has("micro_batch") ? "micro_batch" : s.has("grad_accum") ? "grad_accum" : "ctx_len");
    }
  } else {
    Stage st;
    st.ctx_len = c.data.ctx_len;
    st.micro_batch = c.train.micro_batch;
    st.grad_accum = c.train.grad_accum;
    check_batch(c, st, train, "micro_batch");
    const int64_t spe = c.train.epoch_samples / st.global_batch();
    st.steps = c.train.epoch_count * spe;
    st.lr_init = c.optimizer.lr_init;
    st.lr_final = c.optimizer.lr_final;
    st.warmup_steps = c.optimizer.warmup_steps;
    st.constant_steps = c.optimizer.constant_epochs * spe;
    st.lr_mult = c.optimizer.lr_mult;
    if (c.optimizer.constant_epochs > c.train.epoch_count)
      opt.fail("constant_epochs", fmt::format("{} exceeds train.epoch_count = {}", c.optimizer.constant_epochs,
                                              c.train.epoch_count));
    c.stages.push_back(st);
  }

  // Device constraints known before start (device: auto is checked again once resolved).
  if (c.train.device == DeviceKind::cuda && c.model.n_embd % 32 != 0)
    train.fail("device", fmt::format("cuda needs model.n_embd to be a multiple of 32, got {}", c.model.n_embd));
  if (c.train.device == DeviceKind::cpu && c.train.precision == Precision::bf16)
    train.fail("precision", "bf16 needs device cuda (the CPU path trains in fp32)");

  train.finish();
  opt.finish();
  top.finish();
  return c;
}

RunConfig load_run_config(const std::string& file, const std::vector<Override>& overrides) {
  std::ifstream in(file);
  if (!in) throw ConfigError(file + ": cannot open the config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_run_config(ss.str(), file, overrides);
}

int64_t RunConfig::total_steps() const {
  int64_t n = 0;
  for (const auto& s : stages) n += s.steps;
  return n;
}

std::string RunConfig::to_yaml() const {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "n_layer" << YAML::Value << model.n_layer;
  e << YAML::Key << "n_embd" << YAML::Value << model.n_embd;
  e << YAML::Key << "vocab_size" << YAML::Value << model.vocab_size;
  e << YAML::Key << "dim_att" << YAML::Value << model.dim_att;
  e << YAML::Key << "dim_ffn" << YAML::Value << model.dim_ffn;
  e << YAML::EndMap;

  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "path" << YAML::Value << YAML::DoubleQuoted << data.path;
  e << YAML::Key << "tokenizer" << YAML::Value << YAML::DoubleQuoted << data.tokenizer;
  e << YAML::Key << "sampler" << YAML::Value << name_of(data.sampler);
  if (data.ctx_len > 0) e << YAML::Key << "ctx_len" << YAML::Value << data.ctx_len;
  e << YAML::EndMap;

  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "run_dir" << YAML::Value << YAML::DoubleQuoted << train.run_dir;
  e << YAML::Key << "micro_batch" << YAML::Value << train.micro_batch;
  e << YAML::Key << "grad_accum" << YAML::Value << train.grad_accum;
  e << YAML::Key << "epoch_samples" << YAML::Value << train.epoch_samples;
  e << YAML::Key << "epoch_count" << YAML::Value << train.epoch_count;
  e << YAML::Key << "max_steps" << YAML::Value << train.max_steps;
  e << YAML::Key << "seed" << YAML::Value << train.seed;
  e << YAML::Key << "precision" << YAML::Value << name_of(train.precision);
  e << YAML::Key << "device" << YAML::Value << name_of(train.device);
  e << YAML::Key << "nan_skip_limit" << YAML::Value << train.nan_skip_limit;
  e << YAML::Key << "threads" << YAML::Value << train.threads;
  e << YAML::Key << "activation_checkpointing" << YAML::Value << train.activation_checkpointing;
  e << YAML::Key << "dist_timeout_s" << YAML::Value << real(train.dist_timeout_s);
  e << YAML::Key << "zero_stage" << YAML::Value << train.zero_stage;
  e << YAML::Key << "grad_bucket_mb" << YAML::Value << real(train.grad_bucket_mb);
  e << YAML::Key << "overlap_grad_reduce" << YAML::Value << train.overlap_grad_reduce;
  e << YAML::EndMap;

  e << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "lr_init" << YAML::Value << real(optimizer.lr_init);
  e << YAML::Key << "lr_final" << YAML::Value << real(optimizer.lr_final);
  e << YAML::Key << "constant_epochs" << YAML::Value << optimizer.constant_epochs;
  e << YAML::Key << "warmup_steps" << YAML::Value << optimizer.warmup_steps;
  e << YAML::Key << "betas" << YAML::Value << YAML::Flow << YAML::BeginSeq << real(optimizer.beta1)
    << real(optimizer.beta2) << YAML::EndSeq;
  e << YAML::Key << "eps" << YAML::Value << real(optimizer.eps);
  e << YAML::Key << "weight_decay" << YAML::Value << real(optimizer.weight_decay);
  e << YAML::Key << "grad_clip" << YAML::Value << real(optimizer.grad_clip);
  put_lr_mult(e, optimizer.lr_mult);
  e << YAML::Key << "l2wrap" << YAML::Value << real(optimizer.l2wrap);
  e << YAML::EndMap;

  e << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "dir" << YAML::Value << YAML::DoubleQuoted << checkpoint.dir;
  e << YAML::Key << "every_steps" << YAML::Value << checkpoint.every_steps;
  e << YAML::Key << "keep" << YAML::Value << checkpoint.keep;
  e << YAML::Key << "resume" << YAML::Value << name_of(checkpoint.resume);
  e << YAML::Key << "init_from" << YAML::Value << YAML::DoubleQuoted << checkpoint.init_from;
  e << YAML::EndMap;

  e << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "every_steps" << YAML::Value << log.every_steps;
  if (log.peak_auto)
    e << YAML::Key << "peak_tflops" << YAML::Value << "auto";
  else
    e << YAML::Key << "peak_tflops" << YAML::Value << real(log.peak_tflops);
  e << YAML::EndMap;

  e << YAML::Key << "sample" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "prompt" << YAML::Value << YAML::DoubleQuoted << sample.prompt;
  e << YAML::Key << "length" << YAML::Value << sample.length;
  e << YAML::Key << "temperature" << YAML::Value << real(sample.temperature);
  e << YAML::EndMap;

  if (explicit_stages) {
    e << YAML::Key << "stages" << YAML::Value << YAML::BeginSeq;
    for (const auto& s : stages) {
      e << YAML::BeginMap;
      e << YAML::Key << "ctx_len" << YAML::Value << s.ctx_len;
      e << YAML::Key << "micro_batch" << YAML::Value << s.micro_batch;
      e << YAML::Key << "grad_accum" << YAML::Value << s.grad_accum;
      e << YAML::Key << "steps" << YAML::Value << s.steps;
      e << YAML::Key << "lr_init" << YAML::Value << real(s.lr_init);
      e << YAML::Key << "lr_final" << YAML::Value << real(s.lr_final);
      e << YAML::Key << "warmup_steps" << YAML::Value << s.warmup_steps;
      e << YAML::Key << "constant_epochs" << YAML::Value << s.constant_steps / steps_per_epoch(s);
      put_lr_mult(e, s.lr_mult);
      e << YAML::EndMap;
    }
    e << YAML::EndSeq;
  }
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

std::string RunConfig::hash() const {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : to_yaml()) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

std::string unsafe_resume_change(const RunConfig& saved, const RunConfig& current) {
  std::map<std::string, std::string> a, b;
  flatten(YAML::Load(saved.to_yaml()), "", a);
  flatten(YAML::Load(current.to_yaml()), "", b);
  const size_t saved_stages = saved.explicit_stages ? saved.stages.size() : 0;
  const auto safe = [&](const std::string& key) {
    // activation_checkpointing recomputes the same arithmetic: the gradients do not change.
    static const char* prefixes[] = {"train.max_steps", "train.nan_skip_limit", "train.threads",
                                     "train.activation_checkpointing",
                                     // how the work is spread over ranks, not what is computed
                                     "train.dist_timeout_s", "train.zero_stage", "train.grad_bucket_mb",
                                     "train.overlap_grad_reduce",
                                     "train.run_dir", "checkpoint.", "log.", "sample."};
    for (const char* p : prefixes)
      if (key.rfind(p, 0) == 0) return true;
    // Stages appended after the saved ones only lengthen the run.
    if (saved.explicit_stages && current.explicit_stages && key.rfind("stages.", 0) == 0)
      return std::stoul(key.substr(7)) >= saved_stages;
    return false;
  };
  for (const auto& [k, v] : a) {
    const auto it = b.find(k);
    const std::string now = it == b.end() ? "(absent)" : it->second;
    if (now != v && !safe(k)) return fmt::format("{}: {} -> {}", k, v, now);
  }
  for (const auto& [k, v] : b)
    if (!a.count(k) && !safe(k)) return fmt::format("{}: (absent) -> {}", k, v);
  return "";
}

}  // namespace rwkv::trainer
