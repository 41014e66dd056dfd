#include "loadgen/serve_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

namespace stub::loadgen {

namespace {

Error spawn_error(const std::string& what) {
  return Error{ErrorCode::internal, "serve_spawn_failed",
               "Cannot start stub serve: " + what + ": " + std::strerror(errno) + "."};
}

}  // namespace

Result<std::unique_ptr<ServeProcess>> ServeProcess::start(
    const std::string& db, const std::string& admin_token,
    const std::vector<std::string>& extra_args, const std::filesystem::path& log_file,
    std::chrono::milliseconds timeout) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec)
    return Error{ErrorCode::internal, "serve_spawn_failed", "Cannot find this binary's path."};
  std::vector<std::string> args{self.string(), "serve", "--db", db, "--addr", "127.0.0.1:0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  // The environment is built before fork: the child may only make async-signal-safe calls.
  std::vector<std::string> env_text{"STUB_ADMIN_TOKEN=" + admin_token};
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!std::string_view(*entry).starts_with("STUB_ADMIN_TOKEN="))
      env_text.emplace_back(*entry);
  }
  std::vector<char*> envp;
  for (std::string& entry : env_text)
    envp.push_back(entry.data());
  envp.push_back(nullptr);

  const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0)
    return spawn_error("open " + log_file.string());
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(log_fd);
    return spawn_error("pipe");
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    ::close(out[0]);
    ::close(out[1]);
    return spawn_error("fork");
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0)
      ::dup2(null_fd, STDIN_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(out[1]);
  std::unique_ptr<ServeProcess> process(new ServeProcess(pid, log_file));

  // Read stdout until "serving on http://127.0.0.1:PORT"; then keep reading it on a thread so
  // the child never blocks on a full pipe.
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  constexpr std::string_view marker = "serving on http://127.0.0.1:";
  while (true) {
    const size_t at = text.find(marker);
    if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
      process->port_ = static_cast<uint16_t>(std::stoi(text.substr(at + marker.size())));
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd wanted{out[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&wanted, 1, static_cast<int>(left.count())) <= 0) {
      ::close(out[0]);
      process->stop(std::chrono::milliseconds(2'000));
      return Error{ErrorCode::internal, "serve_not_ready",
                   "stub serve did not start listening in time; see " + log_file.string() + "."};
    }
    char buffer[4096];
    const ssize_t got = ::read(out[0], buffer, sizeof buffer);
    if (got <= 0) {
      ::close(out[0]);
      process->stop(std::chrono::milliseconds(2'000));
      return Error{ErrorCode::internal, "serve_exited",
                   "stub serve exited before listening; see " + log_file.string() + "."};
    }
    text.append(buffer, static_cast<size_t>(got));
  }
  std::thread([fd = out[0]] {
    char buffer[4096];
    while (::read(fd, buffer, sizeof buffer) > 0) {
    }
    ::close(fd);
  }).detach();
  return process;
}

bool ServeProcess::running() {
  if (reaped_)
    return false;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) {
    reaped_ = true;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return false;
  }
  return done == 0;
}

int ServeProcess::stop(std::chrono::milliseconds grace) {
  if (!running())
    return exit_status_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (running()) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    exit_status_ = -1;
  }
  return exit_status_;
}

ServeProcess::~ServeProcess() {
  stop();
}

ProcessSample sample_process(pid_t pid) {
  ProcessSample sample;
  const std::filesystem::path proc = "/proc/" + std::to_string(pid);
  std::ifstream status(proc / "status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) {
      sample.rss_kib = std::stoll(line.substr(6));
      break;
    }
  }
  std::error_code ec;
  int64_t fds = 0;
  for (auto it = std::filesystem::directory_iterator(proc / "fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  if (!ec)
    sample.fds = fds;
  return sample;
}

}  // namespace stub::loadgen
