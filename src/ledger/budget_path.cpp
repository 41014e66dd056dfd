#include "ledger/budget_path.hpp"

#include <cassert>

namespace stub::ledger {

namespace {

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool valid_segment(std::string_view segment) {
  if (segment.empty() || segment.size() > BudgetPath::segment_length_max)
    return false;
  if (!is_lower_alnum(segment.front()))
    return false;
  for (char c : segment) {
    if (!is_lower_alnum(c) && c != '_' && c != '-')
      return false;
  }
  return true;
}

}  // namespace

std::optional<BudgetPath> BudgetPath::parse(std::string_view text) {
  size_t depth = 0;
  size_t start = 0;
  while (true) {
    const size_t slash = text.find('/', start);
    const std::string_view segment = text.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!valid_segment(segment))
      return std::nullopt;
    if (++depth > depth_max)
      return std::nullopt;
    if (slash == std::string_view::npos)
      break;
    start = slash + 1;
  }
  return BudgetPath(std::string(text), depth);
}

std::string BudgetPath::root() const {
  return text_.substr(0, text_.find('/'));
}

std::optional<BudgetPath> BudgetPath::parent() const {
  if (is_root())
    return std::nullopt;
  const size_t slash = text_.rfind('/');
  assert(slash != std::string::npos);
  return BudgetPath(text_.substr(0, slash), depth_ - 1);
}

std::vector<BudgetPath> BudgetPath::lineage() const {
  std::vector<BudgetPath> out;
  out.reserve(depth_);
  size_t position = 0;
  for (size_t depth = 1; depth <= depth_; ++depth) {
    position = text_.find('/', position);
    const size_t end = position == std::string::npos ? text_.size() : position;
    out.push_back(BudgetPath(text_.substr(0, end), depth));
    if (position != std::string::npos)
      ++position;
  }
  assert(out.size() == depth_ && out.back().text_ == text_);
  return out;
}

bool BudgetPath::within(const BudgetPath& ancestor) const {
  if (ancestor.text_.size() > text_.size())
    return false;
  if (text_.compare(0, ancestor.text_.size(), ancestor.text_) != 0)
    return false;
  return text_.size() == ancestor.text_.size() || text_[ancestor.text_.size()] == '/';
}

}  // namespace stub::ledger
