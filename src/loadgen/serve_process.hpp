#pragma once

// A `stub serve` child process for the benchmarks that drive the real server over HTTP
// (`stub bench --soak`, `--instances`): started from this same binary on 127.0.0.1 and a port
// the kernel picks, with a chosen admin token; its log goes to a file. Stopped with SIGTERM
// (SIGKILL after a grace period) when the object goes away.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ledger/result.hpp"

namespace stub::loadgen {

class ServeProcess {
 public:
  // Starts `stub serve --db <db> --addr 127.0.0.1:0 <extra_args...>` with STUB_ADMIN_TOKEN =
  // `admin_token`, stderr to `log_file`, and waits (up to `timeout`) for its "serving on" line.
  static Result<std::unique_ptr<ServeProcess>> start(
      const std::string& db, const std::string& admin_token,
      const std::vector<std::string>& extra_args, const std::filesystem::path& log_file,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(60'000));
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess();

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::filesystem::path& log_file() const { return log_file_; }
  // SIGTERM, then SIGKILL after `grace`; returns the exit status (-1 when killed or unknown).
  int stop(std::chrono::milliseconds grace = std::chrono::milliseconds(30'000));
  // Whether the process is still running (reaps it when it has exited).
  bool running();

 private:
  ServeProcess(pid_t pid, std::filesystem::path log_file) : pid_(pid), log_file_(log_file) {}

  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::filesystem::path log_file_;
  bool reaped_ = false;
  int exit_status_ = -1;
};

// Resident set size (VmRSS) and open file descriptors of a local process, from /proc/<pid>.
struct ProcessSample {
  int64_t rss_kib = -1;
  int64_t fds = -1;
};
ProcessSample sample_process(pid_t pid);

}  // namespace stub::loadgen
