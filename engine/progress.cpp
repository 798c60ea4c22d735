#include "engine/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace rf {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string format_duration(double s) {
  char buf[64];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%d min %02d s", (int)s / 60, (int)s % 60);
  else
    std::snprintf(buf, sizeof buf, "%d h %02d min", (int)s / 3600, ((int)s % 3600) / 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), start_(now_seconds()), tty_(isatty(2)) {}

void Progress::update(int64_t done, const std::string& extra) {
  double t = now_seconds();
  // On a terminal redraw often; in a log file print a line every 10 s at most.
  if (done < total_ && last_print_ >= 0 && t - last_print_ < (tty_ ? 0.2 : 10.0)) return;
  last_print_ = t;
  double rate = done / std::max(t - start_, 1e-9);
  std::string eta = done > 0 && done < total_ ? ", ETA " + format_duration((total_ - done) / rate) : "";
  std::fprintf(stderr, "%s%s %lld/%lld (%d%%), %.2f /s%s%s%s", tty_ ? "\r" : "", label_.c_str(), (long long)done,
               (long long)total_, total_ ? (int)(100 * done / total_) : 100, rate, eta.c_str(),
               extra.empty() ? "" : ", ", extra.c_str());
  std::fprintf(stderr, tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void Progress::finish(const std::string& extra) {
  last_print_ = -1;
  update(total_, extra);
  std::fprintf(stderr, "%s  done in %s\n", tty_ ? "" : label_.c_str(), format_duration(now_seconds() - start_).c_str());
}

}  // namespace rf
