#include "engine/fileio.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace rf {

std::string read_file(const std::string& path) {
  RF_CHECK(!is_folder(path), path, " is a folder, not a file");
  std::ifstream f(path, std::ios::binary);
  RF_CHECK(f, path, ": cannot open for reading (", std::strerror(errno), ")");
  std::ostringstream s;
  s << f.rdbuf();
  RF_CHECK(!f.bad(), path, ": read error");
  return s.str();
}

static std::string temp_name(const std::string& path) {
  return cat(path, ".tmp.", (long)getpid());
}

void write_atomic_with(const std::string& path, const std::function<void(const std::string&)>& write) {
  std::string tmp = temp_name(path);
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw Error(cat(path, ": cannot write (", std::strerror(e), ")"));
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_atomic_with(path, [&](const std::string& tmp) {
    FILE* f = std::fopen(tmp.c_str(), "wb");
    RF_CHECK(f, path, ": cannot open for writing (", std::strerror(errno), ")");
    size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
    bool ok = n == bytes.size() && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    std::fclose(f);
    RF_CHECK(ok, path, ": write failed (", std::strerror(e), ")");
  });
}

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

bool is_folder(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  RF_CHECK(!ec, path, ": cannot create folder (", ec.message(), ")");
}

}  // namespace rf
