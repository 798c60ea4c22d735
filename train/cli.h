// Command-line plumbing shared by the programs in train/cmd/: a small flag parser and a main() wrapper
// that turns any error into one sentence on stderr and a non-zero exit.
#pragma once
#include "engine/progress.h"  // the programs' progress lines
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace rf {

class Args {
 public:
  // `usage` is printed for --help and after a usage error. Flags are "--name value" or "--name=value";
  // names listed in `switches` take no value.
  Args(int argc, char** argv, std::string usage, std::set<std::string> switches = {});
  std::string str(const std::string& name, const std::string& fallback) const;
  std::string required(const std::string& name) const;
  // Numbers are parsed whole ("12x" and "1e400" are errors) and must lie in [lo, hi] (NaN and infinities
  // are refused); the error names the flag.
  int64_t integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const;
  double number(const std::string& name, double fallback, double lo, double hi) const;
  bool flag(const std::string& name) const;
  bool has(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // The positional arguments, which must be n; otherwise throws `what` — or, when a flag the usage never
  // mentions was given (it swallowed the next argument as its value), names that flag instead.
  const std::vector<std::string>& positional(size_t n, const std::string& what) const;
  // Throws naming the first flag that was given but never asked for (a typo is an error, not a no-op).
  void check_all_used() const;
  const std::string& usage() const { return usage_; }

 private:
  int64_t parse_integer(const std::string& name, int64_t fallback) const;
  double parse_number(const std::string& name, double fallback) const;
  std::string usage_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  mutable std::set<std::string> used_;
};

// Runs body; on error prints "<program>: <message>" and returns 1. --help prints the usage and returns 0.
int run_main(const char* program, const std::function<int()>& body);


}  // namespace rf
