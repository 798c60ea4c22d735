// Files: whole-file reads with clear errors, and atomic writes (temp file in the same folder, then
// rename), so an interrupted program never leaves half a file under the real name.
#pragma once
#include <functional>
#include <string>

namespace rf {

std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, const std::string& bytes);
// For writers that produce the file themselves (e.g. an image encoder): `write` gets a temporary path
// in the same folder; it is renamed to `path` only if `write` returns without throwing.
void write_atomic_with(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);
bool file_exists(const std::string& path);
bool is_folder(const std::string& path);  // false when it does not exist
void make_dirs(const std::string& path);

}  // namespace rf
