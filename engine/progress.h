// Wall-clock time and progress lines for long work (training, fitting, evaluation).
#pragma once
#include <cstdint>
#include <string>

namespace rf {

// "12.3 s", "4 min 05 s", ...
std::string format_duration(double seconds);

// A progress line on stderr: "label 37/100 (37%), 2.1 /s, ETA 30 s", redrawn in place on a terminal.
class Progress {
 public:
  Progress(std::string label, int64_t total);
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  std::string label_;
  int64_t total_;
  double start_, last_print_ = -1;
  bool tty_;
};

double now_seconds();

}  // namespace rf
