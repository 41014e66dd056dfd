// BudgetPath::parse over arbitrary text. Properties: an accepted path keeps its text, has
// 1..depth_max segments of the allowed alphabet; its lineage runs root to itself with each
// element the parent of the next; it is within each ancestor, and each ancestor re-parses.

#include <string>

#include "fuzz/fuzz_check.hpp"
#include "ledger/budget_path.hpp"

using stub::ledger::BudgetPath;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = stub::fuzz::as_text(data, size);
  // Two paths, split at the first '|', to check within() against each other too.
  const size_t bar = text.find('|');
  const auto path = BudgetPath::parse(text.substr(0, bar));
  if (path) {
    FUZZ_CHECK(path->str() == text.substr(0, bar));
    FUZZ_CHECK(path->depth() >= 1 && path->depth() <= BudgetPath::depth_max);
    FUZZ_CHECK(path->str().find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-/") ==
               std::string::npos);
    const auto lineage = path->lineage();
    FUZZ_CHECK(lineage.size() == path->depth());
    FUZZ_CHECK(lineage.front().str() == path->root() && lineage.front().is_root());
    FUZZ_CHECK(lineage.back() == *path);
    for (size_t i = 0; i < lineage.size(); ++i) {
      FUZZ_CHECK(lineage[i].depth() == i + 1);
      FUZZ_CHECK(path->within(lineage[i]));
      FUZZ_CHECK(BudgetPath::parse(lineage[i].str()) == lineage[i]);
      if (i > 0) {
        FUZZ_CHECK(lineage[i].parent() == lineage[i - 1]);
        FUZZ_CHECK(!lineage[i - 1].within(lineage[i]));
      }
    }
    FUZZ_CHECK(path->is_root() == !path->parent().has_value());
  }
  if (bar == std::string_view::npos)
    return 0;
  const auto other = BudgetPath::parse(text.substr(bar + 1));
  if (path && other) {
    // within() is the prefix relation on segments.
    const bool below = path->within(*other);
    const std::string& a = path->str();
    const std::string& b = other->str();
    FUZZ_CHECK(below == (a == b || (a.size() > b.size() && a.compare(0, b.size(), b) == 0 &&
                                    a[b.size()] == '/')));
    if (below && other->within(*path))
      FUZZ_CHECK(*path == *other);
  }
  return 0;
}
