#pragma once

// Plain-English questions over the ledger (POST /v1/ask, `stub ask`). A question becomes a
// constrained Query, which runs like any other; the answer shows the query, so the user sees
// what was asked of the ledger.
//
// The offline parser is deterministic and always available: it maps words to the query's
// closed vocabulary (metrics, groups, time ranges) and to names that exist in the ledger
// (budget nodes, vendors, categories, tag values: the Vocabulary, read from the store). Any
// word it cannot place makes the question "cannot answer", with what it did understand: it
// never guesses a name, and nothing in a question ever reaches SQL except as a bound value that
// the vocabulary already held.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "query/compiler.hpp"
#include "query/query.hpp"
#include "store/store.hpp"

namespace stub::query {

inline constexpr size_t question_length_max = 1'024;
inline constexpr size_t vocabulary_names_max = 10'000;  // per kind of name

struct Vocabulary {
  std::string default_subtree;       // the caller's node, or the root asked about
  std::vector<std::string> budgets;  // every node path in scope
  std::vector<std::string> vendors;
  std::vector<std::string> categories;
  std::map<std::string, std::vector<std::string>> tag_values;  // key -> values seen
};

struct QuestionParse {
  std::optional<Query> query;
  // "compared with last month": the same query over the previous period.
  std::optional<Query> comparison;
  std::vector<std::string> understood;  // what each recognised phrase became
  std::vector<std::string> unknown;     // words it could not place
  std::string cannot_answer;            // why, when there is no query
};

QuestionParse parse_question(std::string_view question, const Vocabulary& vocabulary, Micros now);

// The names a question may refer to, read from the store: nodes of `subtree`, and the vendors,
// categories and tag values of its entries (bounded by vocabulary_names_max each).
Result<Vocabulary> read_vocabulary(store::Store& store, const std::string& subtree);

// One sentence that states the answer with the query's own terms, e.g. "Spend in acme this
// month: 12.50 USD across 3 teams; the most: acme/research (10.00 USD)."
std::string answer_sentence(const Answer& answer, const std::optional<Answer>& comparison,
                            std::string_view currency);

}  // namespace stub::query
