// A training run's folder: config.json, log.jsonl (one JSON object per logged step), state.json (where a
// --resume continues), checkpoints, and report.html (loss curves and sample images).
#pragma once
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace rf {

class RunDir {
 public:
  // A folder that already holds a run is refused unless resume is set; resume needs one.
  RunDir(const std::string& path, bool resume);
  // A new run refused while it is set up (a bad flag, config or dataset; train_main calls this only before the first
  // step) leaves nothing behind: its empty subfolders and its config.json go, and the folder too when this run made
  // it. When something else this run wrote is left (fits copied --from another run), config.json stays, so that a
  // rerun into the same folder is refused as before. What the folder held before is never touched, nor a resumed
  // run. Never throws (it runs while an exception unwinds).
  void discard_if_unstarted() const noexcept;
  std::string file(const std::string& rel) const { return path_ + "/" + rel; }
  const std::string& path() const { return path_; }
  bool resuming() const { return resume_; }

  void save_config(const nlohmann::json& cfg) const;
  nlohmann::json load_config() const;
  nlohmann::json state() const;  // {} when there is none
  void save_state(const nlohmann::json& s) const;

  // Appends {"time": seconds since the run started, ...fields} to log.jsonl and remembers numeric fields
  // for the report's curves (keyed "<stage>/<field>"). A failed write is an error, never a dropped line.
  void log(const std::string& stage, int64_t step, const nlohmann::json& fields);
  // Resuming: keep only the log lines whose "gstep" (global step) is below `global_step` (the lines a
  // killed run wrote after its last checkpoint are replayed by the resumed one), and delete temporary
  // files a killed write left behind.
  void rewind(int64_t global_step);
  // report.html: one SVG curve per logged numeric field, then the images (paths relative to the run).
  void write_report(const std::string& title, const std::vector<std::pair<std::string, std::string>>& images) const;

 private:
  void load_log(int64_t keep_below);
  std::string path_;
  bool resume_;
  bool created_;                         // the folder did not exist before this run
  std::set<std::string> found_;          // what the folder held before this run (never discarded)
  double start_;
  std::map<std::string, std::vector<std::pair<int64_t, double>>> curves_;
};

}  // namespace rf
