#include "train/cli.h"

#include <unistd.h>

#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <exception>

#include "engine/error.h"

namespace rf {

namespace {
struct HelpRequested {
  std::string usage;
};
}  // namespace

Args::Args(int argc, char** argv, std::string usage, std::set<std::string> switches) : usage_(std::move(usage)) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") throw HelpRequested{usage_};
    if (a.rfind("--", 0) == 0) {
      auto eq = a.find('=');
      std::string name = a.substr(0, eq);
      if (eq != std::string::npos) {
        values_[name] = a.substr(eq + 1);
      } else if (switches.count(name)) {
        values_[name] = "1";
      } else {
        RF_CHECK(i + 1 < argc, "option ", name, " needs a value\n", usage_);
        values_[name] = argv[++i];
      }
    } else {
      positional_.push_back(a);
    }
  }
}

const std::vector<std::string>& Args::positional(size_t n, const std::string& what) const {
  if (positional_.size() == n) return positional_;
  auto mentioned = [&](const std::string& flag) {  // as a whole word: "--fit" is not in "--fit-iters"
    for (size_t at = usage_.find(flag); at != std::string::npos; at = usage_.find(flag, at + 1)) {
      const char next = at + flag.size() < usage_.size() ? usage_[at + flag.size()] : ' ';
      if (!(std::isalnum((unsigned char)next) || next == '-' || next == '_')) return true;
    }
    return false;
  };
  for (const auto& kv : values_) RF_CHECK(mentioned(kv.first), "unknown option ", kv.first, "\n", usage_);
  throw Error(cat(what, "\n", usage_));
}

bool Args::has(const std::string& name) const {
  used_.insert(name);
  return values_.count(name) > 0;
}

std::string Args::str(const std::string& name, const std::string& fallback) const {
  used_.insert(name);
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::required(const std::string& name) const {
  used_.insert(name);
  auto it = values_.find(name);
  RF_CHECK(it != values_.end(), "option ", name, " is required\n", usage_);
  return it->second;
}

int64_t Args::parse_integer(const std::string& name, int64_t fallback) const {
  std::string v = str(name, "");
  if (v.empty()) return fallback;
  try {
    size_t used = 0;
    int64_t x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (...) {
  }
  throw Error(cat("option ", name, " expects an integer, got '", v, "'"));
}

int64_t Args::integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
  int64_t v = parse_integer(name, fallback);
  RF_CHECK(v >= lo && v <= hi, "option ", name, " must be between ", lo, " and ", hi, ", got ", v);
  return v;
}

double Args::number(const std::string& name, double fallback, double lo, double hi) const {
  double v = parse_number(name, fallback);
  RF_CHECK(std::isfinite(v) && v >= lo && v <= hi, "option ", name, " must be between ", lo, " and ", hi, ", got ",
           str(name, cat(fallback)));
  return v;
}

double Args::parse_number(const std::string& name, double fallback) const {
  std::string v = str(name, "");
  if (v.empty()) return fallback;
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    if (used == v.size()) return x;
  } catch (...) {
  }
  throw Error(cat("option ", name, " expects a number, got '", v, "'"));
}

bool Args::flag(const std::string& name) const {
  std::string v = str(name, "0");
  return v == "1" || v == "true" || v == "yes";
}

void Args::check_all_used() const {
  for (auto& [k, v] : values_) RF_CHECK(used_.count(k), "unknown option ", k, "\n", usage_);
}

int run_main(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const HelpRequested& h) {
    std::printf("%s\n", h.usage.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace rf
