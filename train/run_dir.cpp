#include "train/run_dir.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/json.h"
#include "engine/error.h"
#include "engine/fileio.h"
#include "train/cli.h"

namespace rf {

RunDir::RunDir(const std::string& path, bool resume)
    : path_(path), resume_(resume), created_(!std::filesystem::exists(path)), start_(now_seconds()) {
  bool exists = file_exists(file("config.json"));
  RF_CHECK(!exists || resume, path, " already holds a training run: continue it with --resume, or choose another --out");
  RF_CHECK(exists || !resume, "--resume: ", path, " holds no training run (no config.json)");
  make_dirs(path);
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(path, ec)) found_.insert(e.path().filename().string());
  if (resume) load_log(-1);
}

void RunDir::discard_if_unstarted() const noexcept {
  namespace fs = std::filesystem;
  try {
    std::error_code ec;
    if (resume_) return;
    std::vector<fs::path> entries;
    for (auto& e : fs::directory_iterator(path_, ec)) entries.push_back(e.path());
    for (auto& p : entries) {
      const std::string name = p.filename().string();
      if (found_.count(name) || name == "config.json") continue;
      if (!fs::is_directory(p, ec) || !fs::is_empty(p, ec)) return;  // this run wrote something: keep its record
      fs::remove(p, ec);
    }
    fs::remove(file("config.json"), ec);
    if (created_) fs::remove(path_, ec);  // only when empty
  } catch (...) {  // a directory_iterator that failed mid-way: leave the folder as it is
  }
}

// Reads log.jsonl back (the curves, the clock); with keep_below >= 0 rewrites it without the lines at or
// beyond that global step.
void RunDir::load_log(int64_t keep_below) {
  curves_.clear();
  if (!file_exists(file("log.jsonl"))) return;
  std::ifstream in(file("log.jsonl"));
  std::string line, kept;
  while (std::getline(in, line)) {
    nlohmann::json j;
    try {
      j = parse_json(line, file("log.jsonl"));
    } catch (...) {  // a line cut short by a kill: drop it
      continue;
    }
    if (keep_below >= 0 && j.value("gstep", (int64_t)0) >= keep_below) continue;
    kept += line + "\n";
    if (j.contains("time") && j["time"].is_number()) start_ = now_seconds() - j["time"].get<double>();
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.value().is_number() && it.key() != "step" && it.key() != "time" && it.key() != "gstep")
        curves_[j.value("stage", "") + "/" + it.key()].push_back({j.value("step", (int64_t)0), it.value().get<double>()});
  }
  in.close();
  if (keep_below >= 0) write_file_atomic(file("log.jsonl"), kept);
}

void RunDir::rewind(int64_t global_step) {
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(path_, ec))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) std::filesystem::remove(e.path(), ec);
  load_log(global_step);
}

void RunDir::save_config(const nlohmann::json& cfg) const { write_file_atomic(file("config.json"), cfg.dump(2) + "\n"); }

nlohmann::json RunDir::load_config() const {
  return parse_json(read_file(file("config.json")), file("config.json"));
}

nlohmann::json RunDir::state() const {
  if (!file_exists(file("state.json"))) return nlohmann::json::object();
  return parse_json(read_file(file("state.json")), file("state.json"));
}

void RunDir::save_state(const nlohmann::json& s) const { write_file_atomic(file("state.json"), s.dump(2) + "\n"); }

void RunDir::log(const std::string& stage, int64_t step, const nlohmann::json& fields) {
  nlohmann::json j = {{"time", now_seconds() - start_}, {"stage", stage}, {"step", step}};
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    j[it.key()] = it.value();
    if (it.value().is_number()) curves_[stage + "/" + it.key()].push_back({step, it.value().get<double>()});
  }
  std::string line = j.dump() + "\n";
  FILE* f = std::fopen(file("log.jsonl").c_str(), "ab");
  RF_CHECK(f, file("log.jsonl"), ": cannot open for appending (", std::strerror(errno), ")");
  bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size() && std::fflush(f) == 0;
  int e = errno;
  ok = std::fclose(f) == 0 && ok;
  RF_CHECK(ok, file("log.jsonl"), ": write failed (", std::strerror(e), ")");
}

static std::string svg_curve(const std::string& name, const std::vector<std::pair<int64_t, double>>& pts) {
  const double W = 420, H = 160, pad = 30;
  double x0 = pts.front().first, x1 = std::max<double>(pts.back().first, x0 + 1);
  double y0 = 1e300, y1 = -1e300;
  for (auto& p : pts) {
    y0 = std::min(y0, p.second);
    y1 = std::max(y1, p.second);
  }
  if (y1 <= y0) y1 = y0 + 1e-9;
  std::ostringstream s;
  s << "<figure><svg width='" << W << "' height='" << H << "' style='background:#fafafa'><polyline fill='none' "
    << "stroke='#1f77b4' stroke-width='1.5' points='";
  for (auto& p : pts)
    s << pad + (p.first - x0) / (x1 - x0) * (W - 2 * pad) << "," << H - pad - (p.second - y0) / (y1 - y0) * (H - 2 * pad)
      << " ";
  s << "'/><text x='4' y='14' font-size='11'>" << y1 << "</text><text x='4' y='" << H - 4 << "' font-size='11'>" << y0
    << "</text><text x='" << W - 80 << "' y='" << H - 4 << "' font-size='11'>step " << (int64_t)x1 << "</text></svg>"
    << "<figcaption>" << name << "</figcaption></figure>\n";
  return s.str();
}

void RunDir::write_report(const std::string& title,
                          const std::vector<std::pair<std::string, std::string>>& images) const {
  std::ostringstream h;
  h << "<!doctype html><meta charset='utf-8'><title>" << title << "</title><style>body{font-family:sans-serif}"
    << "figure{display:inline-block;margin:6px}img{max-width:320px;image-rendering:pixelated}</style><h1>" << title
    << "</h1><h2>Curves</h2>\n";
  for (auto& [name, pts] : curves_)
    if (pts.size() >= 2) h << svg_curve(name, pts);
  h << "<h2>Samples</h2>\n";
  for (auto& [caption, rel] : images) h << "<figure><img src='" << rel << "'><figcaption>" << caption << "</figcaption></figure>\n";
  write_file_atomic(file("report.html"), h.str());
}

}  // namespace rf
