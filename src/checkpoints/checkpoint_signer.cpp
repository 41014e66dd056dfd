#include "checkpoints/checkpoint_signer.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

namespace stub::checkpoints {

CheckpointSigner::CheckpointSigner(store::Store& store, SigningKey key, engine::Clock clock,
                                   SignerOptions options)
    : store_(store), key_(std::move(key)), clock_(std::move(clock)), options_(std::move(options)) {
  assert(options_.every_entries >= 1 && options_.every_entries <= every_entries_max);
  assert(options_.interval.count() >= 1 && options_.interval <= interval_max);
  if (options_.poll.count() > 0)
    thread_ = std::thread([this] { run(); });
}

CheckpointSigner::~CheckpointSigner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
  // A last checkpoint of what committed before the stop, so a clean shutdown leaves nothing
  // unsigned (the sequencer stops after this signer: service.cpp).
  if (options_.poll.count() > 0)
    sign_once(true);
}

size_t CheckpointSigner::sign_once(bool force) {
  std::lock_guard pass(pass_mutex_);
  auto roots = store_.list_roots();
  if (!roots.ok()) {
    spdlog::warn("checkpoints: cannot list roots: {}", roots.error().message);
    return 0;
  }
  const ledger::Micros now = clock_();
  size_t signed_count = 0;
  const size_t count = std::min(roots->size(), options_.roots_per_pass_max);
  for (size_t index = 0; index < count; ++index) {
    if (sign_root((*roots)[index], now, force))
      ++signed_count;
  }
  assert(signed_count <= count);
  return signed_count;
}

bool CheckpointSigner::sign_root(const std::string& root, ledger::Micros now, bool force) {
  auto head = store_.get_budget(root);
  if (!head.ok() || !head.value()) {
    if (!head.ok())
      spdlog::warn("checkpoints: cannot read root {}: {}", root, head.error().message);
    return false;
  }
  const ledger::BudgetNode& node = *head.value();
  if (node.head_seq < 1)
    return false;  // an empty chain has nothing to sign
  auto known = latest_.find(root);
  if (known == latest_.end()) {
    auto stored = store_.latest_checkpoint(root);
    if (!stored.ok()) {
      spdlog::warn("checkpoints: cannot read {}'s last checkpoint: {}", root,
                   stored.error().message);
      return false;
    }
    if (stored.value())
      known = latest_.emplace(root, *stored.value()).first;
  }
  const ledger::Checkpoint* last = known == latest_.end() ? nullptr : &known->second;
  if (last != nullptr && last->seq >= node.head_seq)
    return false;  // nothing new since (another instance may have signed further already)
  const ledger::Micros interval_micros =
      std::chrono::duration_cast<std::chrono::microseconds>(options_.interval).count();
  const bool due = force || last == nullptr ||
                   node.head_seq - last->seq >= options_.every_entries ||
                   now - last->ts >= interval_micros;
  if (!due)
    return false;
  ledger::Checkpoint checkpoint;
  checkpoint.root = root;
  checkpoint.seq = node.head_seq;
  checkpoint.hash = node.head_hash;
  // Never before the previous checkpoint nor the head's own entry: time only moves forward.
  checkpoint.ts = std::max({now, node.updated_at, last != nullptr ? last->ts : now});
  checkpoint.key_id = key_.public_key().key_id();
  auto signature = key_.sign(ledger::checkpoint_message(checkpoint));
  if (!signature.ok()) {
    spdlog::error("checkpoints: {}", signature.error().message);
    return false;
  }
  checkpoint.signature = std::move(signature).value();
  auto recorded = store_.record_checkpoint(checkpoint);
  if (!recorded.ok()) {
    spdlog::warn("checkpoints: cannot store {}'s checkpoint at seq {}: {}", root, checkpoint.seq,
                 recorded.error().message);
    return false;
  }
  if (!*recorded) {
    // Another instance signed this head first: remember its checkpoint, not ours.
    auto stored = store_.latest_checkpoint(root);
    if (stored.ok() && stored.value())
      latest_[root] = *stored.value();
    return false;
  }
  if (!options_.file.empty()) {
    if (Status appended = append_to_file(checkpoint); !appended.ok())
      spdlog::error("checkpoints: {}", appended.error().message);
  }
  latest_[root] = checkpoint;
  assert(latest_[root].seq == node.head_seq);
  return true;
}

Status CheckpointSigner::append_to_file(const ledger::Checkpoint& checkpoint) {
  const std::string line = ledger::checkpoint_to_json(checkpoint) + "\n";
  const int fd = ::open(options_.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error{ErrorCode::unavailable, "checkpoint_file_unwritable",
                 "Cannot open " + options_.file + ": " + std::strerror(errno) + "."};
  }
  // One write of a whole line with O_APPEND: lines from instances sharing the file never mix.
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                       ::fsync(fd) == 0;
  const int saved_errno = errno;
  ::close(fd);
  if (!written) {
    return Error{ErrorCode::unavailable, "checkpoint_file_unwritable",
                 "Cannot append to " + options_.file + ": " + std::strerror(saved_errno) + "."};
  }
  return Status::success();
}

void CheckpointSigner::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.poll, [&] { return stopping_; });
    if (stopping_)
      break;
    lock.unlock();
    sign_once(false);
    lock.lock();
  }
}

}  // namespace stub::checkpoints
