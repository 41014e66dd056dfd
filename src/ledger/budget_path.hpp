#pragma once

// A budget path: 1..8 segments of [a-z0-9][a-z0-9_-]{0,62} joined by '/'. The first segment is
// the root (an org or tenant, with its own hash chain).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stub::ledger {

class BudgetPath {
 public:
  static constexpr size_t depth_max = 8;
  static constexpr size_t segment_length_max = 63;

  static std::optional<BudgetPath> parse(std::string_view text);

  const std::string& str() const { return text_; }
  size_t depth() const { return depth_; }
  bool is_root() const { return depth_ == 1; }
  std::string root() const;
  std::optional<BudgetPath> parent() const;
  // Every node from the root down to this one, root first.
  std::vector<BudgetPath> lineage() const;
  // True when this path equals `ancestor` or lies below it.
  bool within(const BudgetPath& ancestor) const;

  friend bool operator==(const BudgetPath&, const BudgetPath&) = default;
  friend auto operator<=>(const BudgetPath& a, const BudgetPath& b) { return a.text_ <=> b.text_; }

 private:
  BudgetPath(std::string text, size_t depth) : text_(std::move(text)), depth_(depth) {}
  std::string text_;
  size_t depth_ = 0;
};

}  // namespace stub::ledger
