#include "trainer/io/pth_writer.h"

#include <c10/util/strides.h>
#include <caffe2/serialize/inline_container.h>

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include <fmt/format.h>

#include "common/durable_file.h"

namespace rwkv::io {

namespace {

// The storage class torch.save names for each element type (torch/storage.py: <Type>Storage).
const char* storage_class(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "FloatStorage";
    case torch::kBFloat16: return "BFloat16Storage";
    case torch::kFloat16: return "HalfStorage";
    case torch::kFloat64: return "DoubleStorage";
    case torch::kInt64: return "LongStorage";
    case torch::kInt32: return "IntStorage";
    case torch::kInt16: return "ShortStorage";
    case torch::kInt8: return "CharStorage";
    case torch::kUInt8: return "ByteStorage";
    case torch::kBool: return "BoolStorage";
    default:
      throw std::invalid_argument(
          fmt::format("no .pth storage type for dtype {}", c10::toString(dtype)));
  }
}

// Emits the subset of pickle protocol 2 that torch.save uses for a dict of tensors
// (Python's Lib/pickletools.py documents each opcode). No memo: every global is spelled out,
// which the unpicklers accept and keeps the emitter stateless.
class PickleEmitter {
 public:
  void proto() { op('\x80'); out_.push_back('\x02'); }
  void stop() { op('.'); }
  void mark() { op('('); }
  void empty_dict() { op('}'); }
  void empty_tuple() { op(')'); }
  void tuple_from_mark() { op('t'); }
  void setitems() { op('u'); }
  void binpersid() { op('Q'); }
  void reduce() { op('R'); }
  void newfalse() { op('\x89'); }

  void global(const std::string& module, const std::string& name) {
    op('c');
    out_ += module;
    out_.push_back('\n');
    out_ += name;
    out_.push_back('\n');
  }

  void unicode(const std::string& s) {
    op('X');
    u32(static_cast<uint32_t>(s.size()));
    out_ += s;
  }

  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      out_.push_back(static_cast<char>(v));
    } else if (v >= 0 && v < 65536) {
      op('M');
      out_.push_back(static_cast<char>(v & 0xff));
      out_.push_back(static_cast<char>((v >> 8) & 0xff));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      // LONG1: little-endian two's complement, shortest length that keeps the sign.
      std::string bytes;
      int64_t x = v;
      do {
        bytes.push_back(static_cast<char>(x & 0xff));
        x >>= 8;  // arithmetic shift on int64_t (C++20)
      } while (!((x == 0 && (bytes.back() & 0x80) == 0) || (x == -1 && (bytes.back() & 0x80) != 0)));
      op('\x8a');
      out_.push_back(static_cast<char>(bytes.size()));
      out_ += bytes;
    }
  }

  void int_tuple(c10::IntArrayRef values) {
    mark();
    for (const int64_t v : values) integer(v);
    tuple_from_mark();
  }

  const std::string& bytes() const { return out_; }

 private:
  void op(char c) { out_.push_back(c); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string out_;
};

// data.pkl for {name: tensor}: tensor i lives in storage record data/<i>, contiguous, offset 0,
// as _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()).
std::string dict_pickle(const NamedTensors& tensors, std::optional<torch::ScalarType> dtype) {
  PickleEmitter p;
  p.proto();
  p.empty_dict();
  p.mark();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i].tensor;
    const torch::ScalarType out_dtype = dtype.value_or(t.scalar_type());
    p.unicode(tensors[i].name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.mark();
    {
      p.mark();
      p.unicode("storage");
      p.global("torch", storage_class(out_dtype));
      p.unicode(std::to_string(i));
      p.unicode("cpu");
      p.integer(t.numel());
      p.tuple_from_mark();
      p.binpersid();
      p.integer(0);
      p.int_tuple(t.sizes());
      p.int_tuple(c10::contiguous_strides(t.sizes()));
      p.newfalse();
      p.global("collections", "OrderedDict");
      p.empty_tuple();
      p.reduce();
    }
    p.tuple_from_mark();
    p.reduce();
  }
  p.setitems();
  p.stop();
  return p.bytes();
}

}  // namespace

void write_pth(const std::filesystem::path& path, const NamedTensors& tensors,
               std::optional<torch::ScalarType> dtype, const ProgressCallback& progress) {
  std::unordered_set<std::string> seen;
  int64_t total_bytes = 0;
  for (const auto& [name, tensor] : tensors) {
    if (!seen.insert(name).second)
      throw std::invalid_argument(fmt::format("{}: tensor name '{}' given twice", path.string(), name));
    if (!tensor.defined())
      throw std::invalid_argument(fmt::format("{}: tensor '{}' is undefined", path.string(), name));
    storage_class(dtype.value_or(tensor.scalar_type()));  // rejects unsupported dtypes up front
    total_bytes += tensor.numel() * static_cast<int64_t>(c10::elementSize(dtype.value_or(tensor.scalar_type())));
  }
  const std::string pickle = dict_pickle(tensors, dtype);

  write_durably(path, [&](const std::filesystem::path& temp) {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    if (!file) throw std::runtime_error(fmt::format("{}: cannot open for writing", temp.string()));
    // The writer_func constructor names the zip's top folder "archive", as torch.save does for a
    // file object; the file-name constructor would name it after the temporary file.
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) -> size_t {
      file.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
      return file ? n : 0;
    });
    // Same records, in the same order, as Python's torch.save (torch/serialization.py, _save).
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    writer.writeRecord(".format_version", "1", 1);
    writer.writeRecord(".storage_alignment", "64", 2);
    writer.writeRecord("byteorder", "little", 6);
    int64_t done_bytes = 0;
    if (progress) progress(done_bytes, total_bytes);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const torch::Tensor& src = tensors[i].tensor;
      const torch::Tensor t = to_cpu_contiguous(src, dtype.value_or(src.scalar_type()));
      writer.writeRecord(fmt::format("data/{}", i), t.data_ptr(), t.nbytes());
      if (!file)
        throw std::runtime_error(fmt::format("{}: write failed at tensor '{}' (disk full?)",
                                             path.string(), tensors[i].name));
      done_bytes += static_cast<int64_t>(t.nbytes());
      if (progress) progress(done_bytes, total_bytes);
    }
    writer.writeEndOfFile();
    file.close();
    if (!file) throw std::runtime_error(fmt::format("{}: write failed (disk full?)", path.string()));
  });
}

}  // namespace rwkv::io
