#include "data/prep.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "data/line_reader.h"
#include "data/magic_prime_sampler.h"
#include "data/utf8.h"

namespace rwkv::data {
namespace fs = std::filesystem;
namespace {

enum class InputKind { jsonl, text };

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool supported(const fs::path& p, InputKind* kind = nullptr) {
  const std::string name = p.filename().string();
  if (ends_with(name, ".jsonl") || ends_with(name, ".jsonl.zst")) {
    if (kind) *kind = InputKind::jsonl;
    return true;
  }
  if (ends_with(name, ".txt")) {
    if (kind) *kind = InputKind::text;
    return true;
  }
  return false;
}

struct Item {
  std::string text;  // a JSON line, or a whole .txt file
  const std::string* file;
  int64_t line;  // 0 for a .txt document
};

struct Work {
  int64_t seq;
  std::vector<Item> items;
  uint64_t input_bytes_after;  // input consumed once this batch is written, for progress
};

struct Result {
  std::vector<int32_t> tokens;
  std::vector<int64_t> doc_lengths;
  std::vector<std::string> bad;  // "file:line: reason"
  int64_t empty = 0;
  uint64_t input_bytes_after = 0;
  std::exception_ptr error;
};

constexpr size_t kBatchBytes = 1 << 20;

// Worker threads tokenizing batches; results are collected by sequence number.
class Pool {
 public:
  Pool(const PrepOptions& opt, const Tokenizer& tok, int threads) : opt_(opt), tok_(tok) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  void submit(Work w) {
    {
      std::lock_guard l(m_);
      queue_.push_back(std::move(w));
    }
    cv_.notify_one();
  }
  Result take(int64_t seq) {
    std::unique_lock l(m_);
    done_cv_.wait(l, [&] { return results_.count(seq) > 0; });
    Result r = std::move(results_[seq]);
    results_.erase(seq);
    return r;
  }

 private:
  void loop() {
    for (;;) {
      Work w;
      {
        std::unique_lock l(m_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        w = std::move(queue_.front());
        queue_.pop_front();
      }
      Result r = process(w);
      {
        std::lock_guard l(m_);
        results_.emplace(w.seq, std::move(r));
      }
      done_cv_.notify_all();
    }
  }

  Result process(Work& w) const {
    Result r;
    r.input_bytes_after = w.input_bytes_after;
    try {
      for (Item& it : w.items) {
        std::string text_storage;
        std::string_view text;
        if (it.line == 0) {
          text = it.text;
        } else {
          if (!is_valid_utf8(it.text)) it.text = sanitize_utf8(it.text);
          const auto j = nlohmann::json::parse(it.text, nullptr, /*allow_exceptions=*/false);
          const auto bad = [&](const std::string& why) { r.bad.push_back(fmt::format("{}:{}: {}", *it.file, it.line, why)); };
          if (j.is_discarded()) {
            bad("invalid JSON");
            continue;
          }
          if (!j.is_object()) {
            bad("not a JSON object");
            continue;
          }
          const auto f = j.find(opt_.text_field);
          if (f == j.end()) {
            bad(fmt::format("no \"{}\" field", opt_.text_field));
            continue;
          }
          if (!f->is_string()) {
            bad(fmt::format("field \"{}\" is not a string", opt_.text_field));
            continue;
          }
          text_storage = f->get<std::string>();
          text = text_storage;
        }
        if (text.empty()) {
          ++r.empty;
          continue;
        }
        const auto ids = tok_.encode(text);
        r.tokens.insert(r.tokens.end(), ids.begin(), ids.end());
        r.tokens.push_back(tok_.eod_id());
        r.doc_lengths.push_back(static_cast<int64_t>(ids.size()) + 1);
      }
    } catch (...) {
      r.error = std::current_exception();
    }
    return r;
  }

  const PrepOptions& opt_;
  const Tokenizer& tok_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::deque<Work> queue_;
  std::map<int64_t, Result> results_;
  bool stop_ = false;
};

std::string read_whole(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error(fmt::format("{}: cannot open", p.string()));
  std::string s((std::istreambuf_iterator<char>(f)), {});
  if (f.bad()) throw std::runtime_error(fmt::format("{}: read error", p.string()));
  return s;
}

}  // namespace

std::vector<fs::path> expand_prep_inputs(const std::vector<fs::path>& inputs) {
  std::vector<fs::path> out;
  for (const auto& in : inputs) {
    if (fs::is_directory(in)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::recursive_directory_iterator(in))
        if (e.is_regular_file() && supported(e.path())) found.push_back(e.path());
      std::sort(found.begin(), found.end());
      if (found.empty())
        throw std::runtime_error(fmt::format("{}: no .jsonl, .jsonl.zst or .txt files in this directory", in.string()));
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(in)) {
      if (!supported(in))
        throw std::runtime_error(fmt::format("{}: unsupported input (expected .jsonl, .jsonl.zst, .txt or a directory)",
                                             in.string()));
      out.push_back(in);
    } else {
      throw std::runtime_error(fmt::format("{}: no such file or directory", in.string()));
    }
  }
  if (out.empty()) throw std::runtime_error("no input files given");
  return out;
}

namespace {

// One tokenized batch into the output, its bad lines reported (or fatal with --on-bad-line abort).
void write_result(Result r, const PrepOptions& opt, const PrepWarning& warn, TokenWriter& writer, PrepStats& st) {
  if (r.error) std::rethrow_exception(r.error);
  for (const auto& b : r.bad) {
    if (opt.abort_on_bad_line) throw std::runtime_error(b + " (aborting: --on-bad-line abort)");
    if (warn && st.bad_lines < opt.max_bad_line_reports) warn(b);
    ++st.bad_lines;
  }
  size_t off = 0;
  for (const int64_t len : r.doc_lengths) {
    writer.add_document(std::span<const int32_t>(r.tokens.data() + off, static_cast<size_t>(len)));
    off += static_cast<size_t>(len);
  }
  st.documents += static_cast<int64_t>(r.doc_lengths.size());
  st.tokens += static_cast<int64_t>(r.tokens.size());
  st.empty_documents += r.empty;
  st.input_bytes = r.input_bytes_after;
}

// The inputs as batches of about kBatchBytes: a text file is one document, a .jsonl/.jsonl.zst
// line one document (blank lines skipped). `names[i]` labels files[i] in bad-line reports.
void read_in_batches(const std::vector<fs::path>& files, const std::vector<std::string>& names,
                     const std::function<void(Work)>& submit) {
  uint64_t bytes_before = 0;  // of the files already finished
  Work work{0, {}, 0};
  size_t work_bytes = 0;
  const auto flush = [&](uint64_t bytes_now) {
    if (work.items.empty()) return;
    work.input_bytes_after = bytes_now;
    submit(std::move(work));
    work = Work{0, {}, 0};
    work_bytes = 0;
  };
  for (size_t fi = 0; fi < files.size(); ++fi) {
    InputKind kind = InputKind::text;
    supported(files[fi], &kind);
    if (kind == InputKind::text) {
      std::string text = read_whole(files[fi]);
      work_bytes += text.size();
      work.items.push_back({std::move(text), &names[fi], 0});
      bytes_before += fs::file_size(files[fi]);
      if (work_bytes >= kBatchBytes) flush(bytes_before);
      continue;
    }
    LineReader reader(files[fi]);
    std::string line;
    while (reader.next(line)) {
      if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines
      work_bytes += line.size();
      work.items.push_back({std::move(line), &names[fi], reader.line_number()});
      line = std::string();
      if (work_bytes >= kBatchBytes) flush(bytes_before + reader.bytes_read());
    }
    bytes_before += reader.bytes_read();
  }
  flush(bytes_before);
}

}  // namespace

PrepStats prepare_tokens(const PrepOptions& opt, const Tokenizer& tok, const PrepProgress& progress,
                         const PrepWarning& warn) {
  const auto files = expand_prep_inputs(opt.inputs);
  std::vector<std::string> names;
  names.reserve(files.size());
  PrepStats st;
  for (const auto& f : files) {
    names.push_back(f.string());
    st.total_input_bytes += fs::file_size(f);
  }
  if (opt.output.empty()) throw std::runtime_error("no output path given");
  if (opt.output.has_parent_path() && !fs::is_directory(opt.output.parent_path()))
    throw std::runtime_error(fmt::format("{}: output directory does not exist", opt.output.parent_path().string()));

  auto writer = make_token_writer(opt.output, opt.format, tok.vocab_size());
  const int threads = opt.threads > 0 ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const int64_t max_in_flight = 2 * threads + 2;
  const auto t0 = std::chrono::steady_clock::now();
  auto last_report = t0;
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  int64_t submitted = 0, written = 0;
  Pool pool(opt, tok, threads);
  const auto write_next = [&] {
    write_result(pool.take(written++), opt, warn, *writer, st);
    const auto now = std::chrono::steady_clock::now();
    if (progress && now - last_report > std::chrono::milliseconds(500)) {
      last_report = now;
      st.seconds = elapsed();
      progress(st);
    }
  };
  const auto submit = [&](Work w) {
    while (submitted - written >= max_in_flight) write_next();
    w.seq = submitted++;
    pool.submit(std::move(w));
  };

  read_in_batches(files, names, submit);
  while (written < submitted) write_next();
  // An empty dataset trains nothing; most often the lines were all bad or the field is wrong.
  if (st.documents == 0)
    throw std::runtime_error(fmt::format(
        "no documents in {} input file(s) ({} bad lines, {} empty documents skipped): check the input format "
        "and --text-field ({}); nothing was written",
        files.size(), st.bad_lines, st.empty_documents, opt.text_field));
  writer->finish();
  st.input_bytes = st.total_input_bytes;
  st.seconds = elapsed();
  if (progress) progress(st);
  return st;
}

std::string format_summary(const PrepStats& s, const std::filesystem::path& output) {
  std::string out = fmt::format(
      "wrote {}\n  documents: {} ({} empty skipped)\n  tokens: {} (EOD included)\n  bad lines skipped: {}\n"
      "  time: {:.1f} s ({:.2f} M tokens/s)\n  magic prime per ctx_len (data/README.md 'Token files and sample order'):\n",
      output.string(), s.documents, s.empty_documents, s.tokens, s.bad_lines, s.seconds,
      s.seconds > 0 ? static_cast<double>(s.tokens) / s.seconds / 1e6 : 0.0);
  for (int64_t ctx : {512, 1024, 2048, 4096, 8192}) {
    try {
      out += fmt::format("    ctx_len {:5d}: {}\n", ctx, magic_prime(s.tokens, ctx));
    } catch (const std::invalid_argument& e) {
      out += fmt::format("    ctx_len {:5d}: none ({})\n", ctx, e.what());
    }
  }
  return out;
}

}  // namespace rwkv::data
