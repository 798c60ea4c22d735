// Errors: every failure in library code is an rf::Error with one readable sentence.
// Library code never calls exit(); the command-line programs catch, print and return non-zero.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace rf {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Shape = std::vector<int64_t>;

inline std::ostream& operator<<(std::ostream& os, const Shape& s) {
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  return os << ']';
}

// Concatenate anything printable into one string (used to build error messages).
template <class... A>
std::string cat(const A&... a) {
  std::ostringstream s;
  (s << ... << a);
  return s.str();
}

}  // namespace rf

#define RF_CHECK(cond, ...)                                  \
  do {                                                       \
    if (!(cond)) throw ::rf::Error(::rf::cat(__VA_ARGS__));  \
  } while (0)

// Host/device qualifiers for math shared by the CPU reference and the CUDA kernels,
// so the formula for an op is written once.
#ifdef __CUDACC__
#define RF_HD __host__ __device__ __forceinline__
#else
#define RF_HD inline
#endif
