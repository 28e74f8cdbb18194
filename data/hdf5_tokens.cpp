#include "data/hdf5_tokens.h"

#include "common/durable_file.h"

#include <fmt/format.h>
#include <hdf5.h>

#include <mutex>
#include <stdexcept>

namespace rwkv::data {
namespace {

constexpr hsize_t kChunk = 1 << 16;  // tokens per chunk: a ctx_len window touches 1–2 chunks

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

// HDF5 prints its own error stack to stderr by default; we report errors ourselves.
void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::runtime_error error(const std::filesystem::path& file, const std::string& what) {
  return std::runtime_error(fmt::format("{}: {}", file.string(), what));
}

}  // namespace

// ---------------------------------------------------------------------------------- writer --

Hdf5TokenWriter::Hdf5TokenWriter(const std::filesystem::path& file, int64_t vocab_size)
    : file_(file), tmp_(file.string() + ".tmp"), u16_(vocab_size <= 65536) {
  std::lock_guard lock(hdf5_mutex());
  silence_hdf5();
  const hid_t f = H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) throw error(tmp_, "cannot create HDF5 file");
  file_id_ = f;
  const hsize_t dims = 0, maxdims = H5S_UNLIMITED, chunk = kChunk;
  const hid_t space = H5Screate_simple(1, &dims, &maxdims);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, &chunk);
  H5Pset_shuffle(dcpl);
  H5Pset_deflate(dcpl, 4);
  const hid_t d = H5Dcreate2(f, "tokens", u16_ ? H5T_STD_U16LE : H5T_STD_I32LE, space, H5P_DEFAULT,
                             dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(space);
  if (d < 0) throw error(tmp_, "cannot create dataset 'tokens'");
  tokens_id_ = d;
  pending_.reserve(kChunk * 4);
}

Hdf5TokenWriter::~Hdf5TokenWriter() {
  std::lock_guard lock(hdf5_mutex());
  if (tokens_id_ >= 0) H5Dclose(tokens_id_);
  if (file_id_ >= 0) H5Fclose(file_id_);
  if (!finished_) {
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void Hdf5TokenWriter::add_document(std::span<const int32_t> tokens) {
  for (const int32_t t : tokens)
    if (t < 0 || (u16_ && t > 65535))
      throw error(tmp_, fmt::format("token id {} does not fit the {} dataset", t, u16_ ? "uint16" : "int32"));
  pending_.insert(pending_.end(), tokens.begin(), tokens.end());
  num_tokens_ += static_cast<int64_t>(tokens.size());
  doc_offsets_.push_back(num_tokens_);
  if (pending_.size() >= kChunk * 4) flush_pending();
}

void Hdf5TokenWriter::flush_pending() {
  if (pending_.empty()) return;
  std::lock_guard lock(hdf5_mutex());
  const hsize_t start = static_cast<hsize_t>(written_), count = pending_.size();
  const hsize_t new_size = start + count;
  if (H5Dset_extent(tokens_id_, &new_size) < 0) throw error(tmp_, "cannot extend dataset 'tokens'");
  const hid_t fspace = H5Dget_space(tokens_id_);
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
  const hid_t mspace = H5Screate_simple(1, &count, nullptr);
  const herr_t st = H5Dwrite(tokens_id_, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, pending_.data());
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (st < 0) throw error(tmp_, "write to dataset 'tokens' failed");
  written_ += static_cast<int64_t>(count);
  pending_.clear();
}

void Hdf5TokenWriter::finish() {
  if (finished_) return;
  flush_pending();
  {
    std::lock_guard lock(hdf5_mutex());
    const hsize_t n = doc_offsets_.size();
    const hid_t space = H5Screate_simple(1, &n, nullptr);
    const hid_t d = H5Dcreate2(file_id_, "doc_offsets", H5T_STD_I64LE, space, H5P_DEFAULT,
                               H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, doc_offsets_.data());
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    if (st < 0) throw error(tmp_, "cannot write dataset 'doc_offsets'");
    H5Dclose(tokens_id_);
    tokens_id_ = -1;
    st = H5Fclose(file_id_);
    file_id_ = -1;
    if (st < 0) throw error(tmp_, "closing the HDF5 file failed");
  }
  commit_durably(tmp_, file_);
  finished_ = true;
}

// ---------------------------------------------------------------------------------- reader --

Hdf5TokenDataset::Hdf5TokenDataset(const std::filesystem::path& file) : file_(file) {
  std::lock_guard lock(hdf5_mutex());
  silence_hdf5();
  if (!std::filesystem::exists(file)) throw error(file, "no such file");
  if (H5Fis_hdf5(file.c_str()) <= 0) throw error(file, "not an HDF5 file (or corrupt)");
  file_id_ = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_id_ < 0) throw error(file, "cannot open as HDF5 (truncated or corrupt?)");
  try {
    // Random windows re-read the same chunks: a 64 MiB chunk cache keeps them decompressed.
    const hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 1021, 64u << 20, 0.75);
    tokens_id_ = H5Dopen2(file_id_, "tokens", dapl);
    H5Pclose(dapl);
    if (tokens_id_ < 0) throw error(file, "no dataset 'tokens'");
    const hid_t type = H5Dget_type(tokens_id_);
    const bool integer = H5Tget_class(type) == H5T_INTEGER;
    H5Tclose(type);
    if (!integer) throw error(file, "dataset 'tokens' is not of an integer type");
    hid_t space = H5Dget_space(tokens_id_);
    hsize_t dims[2] = {0, 0};
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank == 1) H5Sget_simple_extent_dims(space, dims, nullptr);
    H5Sclose(space);
    if (rank != 1) throw error(file, fmt::format("dataset 'tokens' has rank {}, expected 1", rank));
    num_tokens_ = static_cast<int64_t>(dims[0]);

    const hid_t d = H5Dopen2(file_id_, "doc_offsets", H5P_DEFAULT);
    if (d < 0) throw error(file, "no dataset 'doc_offsets'");
    space = H5Dget_space(d);
    const int drank = H5Sget_simple_extent_ndims(space);
    if (drank == 1) H5Sget_simple_extent_dims(space, dims, nullptr);
    H5Sclose(space);
    if (drank != 1 || dims[0] < 1) {
      H5Dclose(d);
      throw error(file, "dataset 'doc_offsets' must be 1-D with at least one entry");
    }
    doc_offsets_.resize(dims[0]);
    const herr_t st = H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, doc_offsets_.data());
    H5Dclose(d);
    if (st < 0) throw error(file, "cannot read dataset 'doc_offsets' (corrupt?)");
    if (doc_offsets_.front() != 0 || doc_offsets_.back() != num_tokens_)
      throw error(file, fmt::format("doc_offsets run from {} to {}, expected 0 to {} (the token count)",
                                    doc_offsets_.front(), doc_offsets_.back(), num_tokens_));
    for (size_t i = 1; i < doc_offsets_.size(); ++i)
      if (doc_offsets_[i] < doc_offsets_[i - 1])
        throw error(file, fmt::format("doc_offsets decrease at entry {}", i));
  } catch (...) {
    if (tokens_id_ >= 0) H5Dclose(tokens_id_);
    H5Fclose(file_id_);
    throw;
  }
}

Hdf5TokenDataset::~Hdf5TokenDataset() {
  std::lock_guard lock(hdf5_mutex());
  H5Dclose(tokens_id_);
  H5Fclose(file_id_);
}

int64_t Hdf5TokenDataset::document_offset(int64_t d) const {
  if (d < 0 || d > num_documents())
    throw std::out_of_range(fmt::format("document {} out of range [0, {}]", d, num_documents()));
  return doc_offsets_[static_cast<size_t>(d)];
}

void Hdf5TokenDataset::read(int64_t pos, int64_t n, int64_t* out) const {
  if (pos < 0 || n < 0 || pos > num_tokens_ || n > num_tokens_ - pos)
    throw std::out_of_range(fmt::format("{}: window [{}, {}) outside the {} tokens", file_.string(),
                                        pos, pos + n, num_tokens_));
  if (n == 0) return;
  std::lock_guard lock(hdf5_mutex());
  const hsize_t start = static_cast<hsize_t>(pos), count = static_cast<hsize_t>(n);
  const hid_t fspace = H5Dget_space(tokens_id_);
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
  const hid_t mspace = H5Screate_simple(1, &count, nullptr);
  const herr_t st = H5Dread(tokens_id_, H5T_NATIVE_INT64, mspace, fspace, H5P_DEFAULT, out);
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (st < 0)
    throw std::runtime_error(fmt::format("{}: reading tokens [{}, {}) failed (corrupt chunk?)",
                                         file_.string(), pos, pos + n));
}

std::string Hdf5TokenDataset::describe() const {
  return fmt::format("hdf5 {} ({} tokens, {} documents)", file_.string(), num_tokens_, num_documents());
}

}  // namespace rwkv::data
