#include "trainer/io/state_dict_unpickler.h"

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

namespace rwkv::io {

namespace {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// The objects a state-dict pickle builds. Dicts keep insertion order (the file's tensor order).
struct Value {
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };
  Kind kind = Kind::None;
  int64_t i = 0;                 // Bool, Int
  double f = 0;                  // Float
  std::string s;                 // String; Global: "module.name"
  std::vector<ValuePtr> items;   // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;  // Dict
  PickledTensor tensor;          // Storage (storage_key, dtype, storage_numel), Tensor

  explicit Value(Kind k) : kind(k) {}
};

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Global: return "global";
    case Value::Kind::Storage: return "storage";
    case Value::Kind::Tensor: return "tensor";
  }
  return "?";
}

// torch.<Name>Storage as torch.save names typed storages (torch/storage.py).
std::optional<torch::ScalarType> storage_dtype(const std::string& global) {
  static const std::map<std::string, torch::ScalarType> table = {
      {"torch.FloatStorage", torch::kFloat32},   {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.HalfStorage", torch::kFloat16},    {"torch.DoubleStorage", torch::kFloat64},
      {"torch.LongStorage", torch::kInt64},      {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},     {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},      {"torch.BoolStorage", torch::kBool},
  };
  const auto it = table.find(global);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

class Unpickler {
 public:
  Unpickler(std::string_view data, const std::string& label) : data_(data), label_(label) {}
  // A pickle may put a container into itself through the memo (BINGET of an open list or dict):
  // Python builds such cycles, shared_ptr would never free them (found by tests/fuzz). A state
  // dict never holds one, so rather than detect them, every container still alive when the
  // unpickler goes is emptied, which breaks any cycle. Destroy the unpickler after the result.
  ~Unpickler() {
    for (const auto& weak : containers_) {
      if (const ValuePtr v = weak.lock()) {
        v->items.clear();
        v->dict.clear();
      }
    }
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  ValuePtr run() {
    while (true) {
      if (pos_ >= data_.size()) fail("ends before the STOP opcode (truncated pickle)");
      op_pos_ = pos_;
      const auto op = static_cast<unsigned char>(data_[pos_++]);
      switch (op) {
        case 0x80: {  // PROTO
          const uint8_t proto = u8();
          if (proto > 5) fail(fmt::format("pickle protocol {} is not supported", proto));
          break;
        }
        case 0x95: take(8); break;  // FRAME (protocol 4): framing only, contents follow inline
        case '.':  // STOP
          if (stack_.size() != 1) fail("STOP with a malformed stack");
          return stack_.back();
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case 'N': push(Value::Kind::None); break;
        case 0x88: push(Value::Kind::Bool)->i = 1; break;  // NEWTRUE
        case 0x89: push(Value::Kind::Bool)->i = 0; break;  // NEWFALSE
        case 'K': push(Value::Kind::Int)->i = u8(); break;  // BININT1
        case 'M': push(Value::Kind::Int)->i = le_uint(2); break;  // BININT2
        case 'J': push(Value::Kind::Int)->i = static_cast<int32_t>(le_uint(4)); break;  // BININT
        case 0x8a: push(Value::Kind::Int)->i = long1(u8()); break;  // LONG1
        case 'G': {  // BINFLOAT: big-endian IEEE double
          uint64_t bits = 0;
          for (const char c : take(8)) bits = (bits << 8) | static_cast<unsigned char>(c);
          double d;
          std::memcpy(&d, &bits, sizeof d);
          push(Value::Kind::Float)->f = d;
          break;
        }
        case 'X': push(Value::Kind::String)->s = std::string(take(le_uint(4))); break;  // BINUNICODE
        case 0x8c: push(Value::Kind::String)->s = std::string(take(u8())); break;  // SHORT_BINUNICODE
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string module = line();
          const std::string name = line();
          push(Value::Kind::Global)->s = module + "." + name;
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const ValuePtr name = pop_kind(Value::Kind::String, "STACK_GLOBAL name");
          const ValuePtr module = pop_kind(Value::Kind::String, "STACK_GLOBAL module");
          push(Value::Kind::Global)->s = module->s + "." + name->s;
          break;
        }
        case ')': push(Value::Kind::Tuple); break;  // EMPTY_TUPLE
        case ']': push(Value::Kind::List); break;   // EMPTY_LIST
        case '}': push(Value::Kind::Dict); break;   // EMPTY_DICT
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84;
          if (stack_.size() < n) fail("tuple of more items than the stack holds");
          auto t = make(Value::Kind::Tuple);
          t->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          stack_.push_back(t);
          break;
        }
        case 't': {  // TUPLE
          auto t = make(Value::Kind::Tuple);
          t->items = pop_to_mark();
          stack_.push_back(t);
          break;
        }
        case 'a': {  // APPEND
          const ValuePtr v = pop();
          top_kind(Value::Kind::List, "APPEND target")->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_to_mark();
          auto& list = top_kind(Value::Kind::List, "APPENDS target")->items;
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          const ValuePtr v = pop();
          const ValuePtr k = pop();
          top_kind(Value::Kind::Dict, "SETITEM target")->dict.emplace_back(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_to_mark();
          if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
          auto& dict = top_kind(Value::Kind::Dict, "SETITEMS target")->dict;
          for (size_t i = 0; i < items.size(); i += 2) dict.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'Q': {  // BINPERSID
          stack_.push_back(persistent_load(pop()));
          break;
        }
        case 'R': {  // REDUCE
          const ValuePtr args = pop_kind(Value::Kind::Tuple, "REDUCE arguments");
          const ValuePtr callable = pop_kind(Value::Kind::Global, "REDUCE callable");
          stack_.push_back(call(callable->s, args->items));
          break;
        }
        case 'b': {  // BUILD: only the attribute state of an OrderedDict (state_dict()._metadata)
          pop();
          top_kind(Value::Kind::Dict, "BUILD target");
          break;
        }
        case 'q': memo_put(u8()); break;  // BINPUT
        case 'r': memo_put(le_uint(4)); break;  // LONG_BINPUT
        case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
        case 'h': stack_.push_back(memo_get(u8())); break;  // BINGET
        case 'j': stack_.push_back(memo_get(le_uint(4))); break;  // LONG_BINGET
        default:
          fail(fmt::format("unsupported pickle opcode 0x{:02x} ('{}'); only the opcodes torch.save "
                           "uses for a dict of tensors are understood",
                           op, (op >= 32 && op < 127) ? static_cast<char>(op) : '?'));
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(fmt::format("{}: data.pkl byte {}: {}", label_, op_pos_, what));
  }

  std::string_view take(size_t n) {
    if (n > data_.size() - pos_) fail("ends inside an opcode's argument (truncated pickle)");
    const std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint8_t u8() { return static_cast<uint8_t>(take(1)[0]); }
  uint64_t le_uint(int n) {
    const std::string_view b = take(static_cast<size_t>(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[i]);
    return v;
  }
  int64_t long1(uint8_t n) {
    if (n == 0) return 0;
    if (n > 8) fail(fmt::format("integer of {} bytes does not fit 64 bits", n));
    const std::string_view b = take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[i]);
    if (n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
    return static_cast<int64_t>(v);
  }
  std::string line() {
    const size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail("GLOBAL without its newline (truncated pickle)");
    std::string s(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }

  // Every Value is made here, so that containers are remembered for the destructor.
  ValuePtr make(Value::Kind k) {
    auto v = std::make_shared<Value>(k);
    if (k == Value::Kind::Tuple || k == Value::Kind::List || k == Value::Kind::Dict) containers_.push_back(v);
    return v;
  }
  ValuePtr push(Value::Kind k) {
    stack_.push_back(make(k));
    return stack_.back();
  }
  ValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      fail("pops from an empty stack");
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr pop_kind(Value::Kind k, const char* what) {
    ValuePtr v = pop();
    if (v->kind != k) fail(fmt::format("{} is a {}, expected a {}", what, kind_name(v->kind), kind_name(k)));
    return v;
  }
  ValuePtr top_kind(Value::Kind k, const char* what) {
    if (stack_.empty()) fail("pops from an empty stack");
    if (stack_.back()->kind != k)
      fail(fmt::format("{} is a {}, expected a {}", what, kind_name(stack_.back()->kind), kind_name(k)));
    return stack_.back();
  }
  std::vector<ValuePtr> pop_to_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void memo_put(uint64_t index) {
    if (stack_.empty()) fail("memoizes an empty stack");
    memo_[index] = stack_.back();
  }
  ValuePtr memo_get(uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail(fmt::format("memo entry {} was never stored", index));
    return it->second;
  }

  int64_t as_int(const ValuePtr& v, const char* what) {
    if (v->kind != Value::Kind::Int) fail(fmt::format("{} is a {}, expected an int", what, kind_name(v->kind)));
    return v->i;
  }
  std::vector<int64_t> int_tuple(const ValuePtr& v, const char* what) {
    if (v->kind != Value::Kind::Tuple) fail(fmt::format("{} is a {}, expected a tuple", what, kind_name(v->kind)));
    std::vector<int64_t> out;
    for (const auto& item : v->items) out.push_back(as_int(item, what));
    return out;
  }

  // persistent_load of torch.save: ('storage', torch.<T>Storage, key, location, numel).
  ValuePtr persistent_load(const ValuePtr& pid) {
    if (pid->kind != Value::Kind::Tuple || pid->items.size() != 5 ||
        pid->items[0]->kind != Value::Kind::String || pid->items[0]->s != "storage")
      fail("persistent id is not ('storage', type, key, location, numel)");
    const ValuePtr& type = pid->items[1];
    if (type->kind != Value::Kind::Global) fail("storage type is not a global");
    const auto dtype = storage_dtype(type->s);
    if (!dtype) fail(fmt::format("unsupported storage type {}", type->s));
    if (pid->items[2]->kind != Value::Kind::String) fail("storage key is not a string");
    auto storage = make(Value::Kind::Storage);
    storage->tensor.dtype = *dtype;
    storage->tensor.storage_key = pid->items[2]->s;
    storage->tensor.storage_numel = as_int(pid->items[4], "storage size");
    return storage;
  }

  ValuePtr call(const std::string& callable, const std::vector<ValuePtr>& args) {
    if (callable == "collections.OrderedDict" && args.empty()) return make(Value::Kind::Dict);
    if (callable == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.size() < 6 || args.size() > 7) fail("_rebuild_tensor_v2 with an unexpected argument count");
      if (args[0]->kind != Value::Kind::Storage) fail("_rebuild_tensor_v2 without a storage");
      auto t = make(Value::Kind::Tensor);
      t->tensor = args[0]->tensor;
      t->tensor.storage_offset = as_int(args[1], "storage offset");
      t->tensor.sizes = int_tuple(args[2], "tensor size");
      t->tensor.strides = int_tuple(args[3], "tensor stride");
      if (t->tensor.sizes.size() != t->tensor.strides.size()) fail("tensor size and stride differ in length");
      return t;
    }
    if (callable == "torch._utils._rebuild_parameter") {  // (data, requires_grad, backward_hooks)
      if (args.size() != 3 || args[0]->kind != Value::Kind::Tensor) fail("malformed _rebuild_parameter");
      return args[0];
    }
    fail(fmt::format("unsupported callable {} (only tensors in a dict or OrderedDict are read)", callable));
  }

  std::string_view data_;
  const std::string& label_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::vector<std::weak_ptr<Value>> containers_;
};

}  // namespace

std::vector<PickledTensor> unpickle_state_dict(std::string_view pickle, const std::string& label) {
  Unpickler unpickler(pickle, label);  // outlives root: its destructor breaks any cycle (see there)
  const ValuePtr root = unpickler.run();
  if (root->kind != Value::Kind::Dict)
    throw std::runtime_error(fmt::format("{}: the pickle holds a {}, not a dict of tensors", label,
                                         kind_name(root->kind)));
  std::vector<PickledTensor> out;
  std::map<std::string, int> seen;
  for (const auto& [key, value] : root->dict) {
    if (key->kind != Value::Kind::String)
      throw std::runtime_error(fmt::format("{}: a dict key is a {}, not a string", label, kind_name(key->kind)));
    if (value->kind != Value::Kind::Tensor)
      throw std::runtime_error(fmt::format("{}: entry '{}' is a {}, not a tensor", label, key->s,
                                           kind_name(value->kind)));
    if (seen[key->s]++ > 0)
      throw std::runtime_error(fmt::format("{}: key '{}' appears twice", label, key->s));
    out.push_back(value->tensor);
    out.back().name = key->s;
  }
  return out;
}

}  // namespace rwkv::io
