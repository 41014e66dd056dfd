#include "query/question.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cassert>
#include <cstdio>
#include <set>

#include "http/text_checks.hpp"
#include "ledger/budget_path.hpp"

#include "ledger/money.hpp"

namespace stub::query {

namespace {

// How many of a root's most recent entries the vocabulary is read from: bounded work per
// question, whatever the ledger's size.
constexpr size_t vocabulary_entries_max = 20'000;
constexpr size_t tokens_max = 96;

// Words that carry no meaning for the query (and so never make a question unanswerable).
const std::set<std::string_view>& filler_words() {
  static const std::set<std::string_view> words{
      "a",          "all",          "am",          "an",        "and",      "are",      "as",
      "at",         "be",           "been",        "breakdown", "broken",   "by",       "can",
      "did",        "do",           "does",        "down",      "during",   "each",     "ever",
      "for",        "from",         "give",        "go",        "going",    "got",      "had",
      "has",        "have",         "how",         "i",         "in",       "is",       "it",
      "its",        "list",         "me",          "my",        "of",       "on",       "our",
      "out",        "over",         "overall",     "per",       "please",   "show",     "so",
      "tell",       "that",         "the",         "their",     "them",     "there",    "they",
      "this",       "to",           "up",          "us",        "using",    "via",      "was",
      "we",         "went",         "were",        "what",      "what's",   "whats",    "when",
      "where",      "which",        "who",         "with",      "within",   "you",      "your",
      "money",      "did",          "get",         "got",       "so",       "far",      "much",
      "many",       "number",       "agents",      "agent's",   "usd",      "dollars",  "$",
      "everything", "total",        "totals",      "amount",    "entries",  "ledger",   "split",
      "grouped",    "group",        "across",      "under",     "inside",   "below",    "budget's",
      "team's",     "was",          "cost",        "costs",     "spending", "spend",    "spent",
      "charges",    "charged",      "spends",      "because",   "due",      "paid",     "pay",
      "payments",   "transactions", "transaction", "times",     "attempts", "requests", "calls",
      "call",       "made",         "make",        "happened",  "been",     "bill",     "bills",
      "billed",     "used",         "use",         "expense",   "expenses"};
  return words;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool name_character(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
         c == '/' || c == ':' || c == '\'' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
}

std::vector<std::string> tokenize(std::string_view question) {
  const std::string text = lowercase(question);
  std::vector<std::string> tokens;
  std::string current;
  auto push = [&] {
    // Trailing sentence punctuation is not part of a name.
    while (!current.empty() && (current.back() == '.' || current.back() == ':' ||
                                current.back() == '\'' || current.back() == '-'))
      current.pop_back();
    while (!current.empty() && (current.front() == '\'' || current.front() == '-'))
      current.erase(current.begin());
    if (!current.empty())
      tokens.push_back(current);
    current.clear();
  };
  for (char c : text) {
    if (name_character(c))
      current += c;
    else
      push();
  }
  push();
  return tokens;
}

std::optional<int> small_number(std::string_view word) {
  static const std::pair<std::string_view, int> words[] = {
      {"one", 1},     {"two", 2},    {"three", 3}, {"four", 4},     {"five", 5},
      {"six", 6},     {"seven", 7},  {"eight", 8}, {"nine", 9},     {"ten", 10},
      {"twenty", 20}, {"fifty", 50}, {"a", 1},     {"hundred", 100}};
  for (const auto& [name, value] : words) {
    if (word == name)
      return value;
  }
  if (word.empty() || word.size() > 4)
    return std::nullopt;
  int value = 0;
  for (char c : word) {
    if (c < '0' || c > '9')
      return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

const std::pair<std::string_view, unsigned> month_names[] = {
    {"january", 1},   {"february", 2},  {"march", 3},  {"april", 4},     {"may", 5},
    {"june", 6},      {"july", 7},      {"august", 8}, {"september", 9}, {"october", 10},
    {"november", 11}, {"december", 12}, {"jan", 1},    {"feb", 2},       {"mar", 3},
    {"apr", 4},       {"jun", 6},       {"jul", 7},    {"aug", 8},       {"sep", 9},
    {"sept", 9},      {"oct", 10},      {"nov", 11},   {"dec", 12}};

std::optional<unsigned> month_number(std::string_view word) {
  for (const auto& [name, number] : month_names) {
    if (word == name)
      return number;
  }
  return std::nullopt;
}

bool is_year(std::string_view word) {
  return word.size() == 4 &&
         std::all_of(word.begin(), word.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         word >= "1970" && word <= "9999";
}

std::string two_digits(unsigned value) {
  return (value < 10 ? "0" : "") + std::to_string(value);
}

class Parser {
 public:
  Parser(std::vector<std::string> tokens, const Vocabulary& vocabulary, Micros now)
      : tokens_(std::move(tokens)),
        used_(tokens_.size(), false),
        vocabulary_(vocabulary),
        now_(now) {}

  QuestionParse run() {
    QuestionParse out;
    find_comparison();
    find_time();
    find_metric();
    find_groups();
    find_top();
    find_denial_codes();
    find_names();
    find_kinds();
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (!used_[i] && !filler_words().contains(tokens_[i]))
        out.unknown.push_back(tokens_[i]);
    }
    out.understood = understood_;
    if (!out.unknown.empty()) {
      std::string words;
      for (const std::string& word : out.unknown)
        words += (words.empty() ? "\"" : ", \"") + word.substr(0, 64) + "\"";
      out.cannot_answer = "Cannot answer: " + words + (out.unknown.size() == 1 ? " is" : " are") +
                          " not a budget, vendor, category, tag value or query term I know.";
      return out;
    }
    if (!metric_given_ && query_.group_by.empty()) {
      out.cannot_answer =
          "Cannot answer: the question asks for no measure I know (how much, how many, "
          "denials, open holds, average) and no breakdown.";
      return out;
    }
    if (query_.filters.subtree.empty())
      query_.filters.subtree = vocabulary_.default_subtree;
    if (query_.filters.subtree.empty()) {
      out.cannot_answer = "Cannot answer: name the budget to ask about.";
      return out;
    }
    if (!range_given_) {
      query_.range = resolve_time_range("all", now_).value();
      understood_.push_back("time: all (no period named)");
      out.understood = understood_;
    }
    if (query_.metric == Metric::holds_open && !query_.filters.kinds.empty()) {
      out.cannot_answer = "Cannot answer: open holds cannot be filtered by entry kind.";
      return out;
    }
    if (query_.metric != Metric::denials && !query_.filters.codes.empty())
      query_.metric = Metric::denials;
    out.query = query_;
    if (compare_) {
      Query previous = query_;
      previous.range = previous_period(query_.range);
      out.comparison = previous;
    }
    return out;
  }

 private:
  bool at(size_t i, std::initializer_list<std::string_view> words) const {
    if (i + words.size() > tokens_.size())
      return false;
    size_t k = i;
    for (std::string_view word : words) {
      if (used_[k] || tokens_[k] != word)
        return false;
      ++k;
    }
    return true;
  }
  void take(size_t i, size_t count) {
    for (size_t k = i; k < i + count && k < tokens_.size(); ++k)
      used_[k] = true;
  }
  // Marks the first occurrence of the phrase as used; true when found.
  bool phrase(std::initializer_list<std::string_view> words) {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (at(i, words)) {
        take(i, words.size());
        return true;
      }
    }
    return false;
  }
  bool any_word(std::initializer_list<std::string_view> words) {
    bool found = false;
    for (size_t i = 0; i < tokens_.size(); ++i) {
      for (std::string_view word : words) {
        if (!used_[i] && tokens_[i] == word) {
          used_[i] = true;
          found = true;
        }
      }
    }
    return found;
  }

  // Whether the range resolves (a window reaching before 1970 does not: "last 3660w"); the
  // caller marks the phrase's words used only then, so a phrase that does not resolve stays
  // unknown and the question is refused rather than answered over another period.
  bool set_range(std::string_view text, std::string_view phrase_text) {
    auto range = resolve_time_range(text, now_);
    if (!range.ok())
      return false;
    query_.range = std::move(range).value();
    range_given_ = true;
    understood_.push_back("time: " + query_.range.text + " (from \"" + std::string(phrase_text) +
                          "\")");
    return true;
  }

  TimeRange previous_period(const TimeRange& range) const {
    // The period of the same calendar kind just before, else the same length just before.
    const std::string& text = range.text;
    auto resolved = [&](std::string_view name) { return resolve_time_range(name, now_).value(); };
    if (text == "this month")
      return resolved("last month");
    if (text == "this week")
      return resolved("last week");
    if (text == "this year")
      return resolved("last year");
    if (text == "today")
      return resolved("yesterday");
    if (text.size() == 7 && text[4] == '-') {  // 2026-11 -> 2026-10
      const int year = std::stoi(text.substr(0, 4));
      const int month = std::stoi(text.substr(5, 2));
      const int index = year * 12 + month - 2;
      auto previous = resolve_time_range(
          std::to_string(index / 12) + "-" + two_digits(static_cast<unsigned>(index % 12 + 1)),
          now_);
      if (previous.ok())
        return previous.value();
    }
    if (text == "last month") {
      // The month before last.
      const TimeRange last = resolved("last month");
      return resolve_time_range(ledger::format_timestamp(last.from - 1).substr(0, 7), now_).value();
    }
    const Micros length =
        range.to == std::numeric_limits<Micros>::max() ? 0 : range.to - range.from;
    return TimeRange{"the period before " + text, std::max<Micros>(0, range.from - length),
                     range.from};
  }

  void find_comparison() {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      size_t length = 0;
      if (at(i, {"compared", "with"}) || at(i, {"compared", "to"}))
        length = 2;
      else if (at(i, {"vs"}) || at(i, {"versus"}) || at(i, {"compared"}))
        length = 1;
      if (length == 0)
        continue;
      take(i, length);
      compare_ = true;
      // What follows names the previous period ("last month", "the previous month").
      for (auto words :
           {std::vector<std::string_view>{"the", "previous", "month"},
            std::vector<std::string_view>{"previous", "month"},
            std::vector<std::string_view>{"the", "month", "before"},
            std::vector<std::string_view>{"the", "previous", "week"},
            std::vector<std::string_view>{"previous", "week"},
            std::vector<std::string_view>{"the", "previous", "period"},
            std::vector<std::string_view>{"previous", "period"},
            std::vector<std::string_view>{"the", "week", "before"},
            std::vector<std::string_view>{"last", "month"},
            std::vector<std::string_view>{"last", "week"},
            std::vector<std::string_view>{"last", "year"},
            std::vector<std::string_view>{"yesterday"}, std::vector<std::string_view>{"before"}}) {
        const size_t start = i + length;
        bool match = start + words.size() <= tokens_.size();
        for (size_t k = 0; match && k < words.size(); ++k)
          match = !used_[start + k] && tokens_[start + k] == words[k];
        if (match) {
          take(start, words.size());
          break;
        }
      }
      understood_.push_back("comparison: the previous period");
      return;
    }
  }

  void find_time() {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      // "last 7 days", "past 24 hours", "last 2 weeks", "in the last 30 days"
      if ((at(i, {"last"}) || at(i, {"past"}) || at(i, {"previous"})) && i + 2 < tokens_.size() &&
          !used_[i + 1] && !used_[i + 2]) {
        auto count = small_number(tokens_[i + 1]);
        const std::string& unit = tokens_[i + 2];
        char letter = 0;
        if (unit == "day" || unit == "days")
          letter = 'd';
        else if (unit == "hour" || unit == "hours")
          letter = 'h';
        else if (unit == "week" || unit == "weeks")
          letter = 'w';
        if (count && *count >= 1 && *count <= 3660 && letter != 0 &&
            set_range("last " + std::to_string(*count) + letter,
                      tokens_[i] + " " + tokens_[i + 1] + " " + unit)) {
          take(i, 3);
          return;
        }
      }
      // "last 7d", "last 24h"
      if ((at(i, {"last"}) || at(i, {"past"})) && i + 1 < tokens_.size() && !used_[i + 1]) {
        const std::string& word = tokens_[i + 1];
        if (word.size() >= 2 && (word.back() == 'd' || word.back() == 'h' || word.back() == 'w')) {
          auto count = small_number(word.substr(0, word.size() - 1));
          if (count && *count >= 1 && *count <= 3660 &&
              set_range("last " + word, tokens_[i] + " " + word)) {
            take(i, 2);
            return;
          }
        }
      }
    }
    struct Named {
      std::vector<std::string_view> words;
      std::string_view range;
    };
    static const Named named[] = {{{"this", "month"}, "this month"},
                                  {{"last", "month"}, "last month"},
                                  {{"previous", "month"}, "last month"},
                                  {{"past", "month"}, "last 30d"},
                                  {{"this", "week"}, "this week"},
                                  {{"last", "week"}, "last week"},
                                  {{"past", "week"}, "last 7d"},
                                  {{"this", "year"}, "this year"},
                                  {{"last", "year"}, "last year"},
                                  {{"month", "to", "date"}, "this month"},
                                  {{"so", "far", "this", "month"}, "this month"},
                                  {{"today"}, "today"},
                                  {{"yesterday"}, "yesterday"},
                                  {{"ever"}, "all"},
                                  {{"all", "time"}, "all"}};
    for (const Named& entry : named) {
      for (size_t i = 0; i < tokens_.size(); ++i) {
        bool match = i + entry.words.size() <= tokens_.size();
        for (size_t k = 0; match && k < entry.words.size(); ++k)
          match = !used_[i + k] && tokens_[i + k] == entry.words[k];
        if (match) {
          std::string text;
          for (std::string_view word : entry.words)
            text += (text.empty() ? "" : " ") + std::string(word);
          if (set_range(entry.range, text)) {
            take(i, entry.words.size());
            return;
          }
        }
      }
    }
    for (size_t i = 0; i + 1 < tokens_.size(); ++i) {
      // "since 2026-11-01": from that day to now.
      if (at(i, {"since"}) && !used_[i + 1] && tokens_[i + 1].size() == 10) {
        auto day = resolve_time_range(tokens_[i + 1], now_);
        if (day.ok() && day->from <= now_ &&
            set_range("since " + tokens_[i + 1], "since " + tokens_[i + 1])) {
          take(i, 2);
          return;
        }
      }
    }
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (used_[i])
        continue;
      const std::string& word = tokens_[i];
      // 2026-11-03, 2026-11, 2026
      if ((word.size() == 10 || word.size() == 7 || is_year(word)) && set_range(word, word)) {
        take(i, 1);
        return;
      }
      // "november", "november 2026", "nov 2026"
      if (auto month = month_number(word)) {
        // "may" alone is too often a verb: it counts only next to a year or after "in".
        const bool year_follows =
            i + 1 < tokens_.size() && !used_[i + 1] && is_year(tokens_[i + 1]);
        if (word == "may" && !year_follows && !(i > 0 && tokens_[i - 1] == "in"))
          continue;
        const std::string this_year = ledger::format_timestamp(now_).substr(0, 4);
        int year = std::stoi(this_year);
        if (year_follows) {
          year = std::stoi(tokens_[i + 1]);
        } else {
          // A month later than the current one means last year's.
          const unsigned current =
              static_cast<unsigned>(std::stoi(ledger::format_timestamp(now_).substr(5, 2)));
          if (*month > current)
            --year;
        }
        if (set_range(std::to_string(year) + "-" + two_digits(*month), word)) {
          take(i, year_follows ? 2 : 1);
          return;
        }
      }
    }
  }

  void find_metric() {
    const bool denial_words = any_word(
        {"denied", "denials", "denial", "refused", "refusals", "rejected", "declined", "blocked"});
    if (denial_words) {
      query_.metric = Metric::denials;
      metric_given_ = true;
      phrase({"how", "many"});
      understood_.push_back("metric: denials");
      return;
    }
    bool holds = false;
    for (auto words : {std::initializer_list<std::string_view>{"open", "holds"},
                       std::initializer_list<std::string_view>{"holds", "open"},
                       std::initializer_list<std::string_view>{"outstanding", "holds"},
                       std::initializer_list<std::string_view>{"pending", "holds"}})
      holds = phrase(words) || holds;
    holds = any_word({"holds", "hold", "reserved", "reservations", "outstanding"}) || holds;
    if (holds) {
      query_.metric = Metric::holds_open;
      metric_given_ = true;
      understood_.push_back("metric: holds_open");
      return;
    }
    if (any_word({"average", "avg", "mean", "typical"})) {
      query_.metric = Metric::avg;
      metric_given_ = true;
      understood_.push_back("metric: avg");
      return;
    }
    if (phrase({"how", "many"}) || phrase({"number", "of"}) ||
        any_word({"count", "counts", "many"})) {
      query_.metric = Metric::count;
      metric_given_ = true;
      understood_.push_back("metric: count");
      return;
    }
    if (phrase({"how", "much"})) {
      metric_given_ = true;
      understood_.push_back("metric: spend (from \"how much\")");
      return;
    }
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const std::string& word = tokens_[i];
      if (word == "spend" || word == "spent" || word == "spending" || word == "cost" ||
          word == "costs" || word == "total" || word == "paid" || word == "charges" ||
          word == "expenses" || word == "bill" || word == "billed") {
        metric_given_ = true;
        understood_.push_back("metric: spend (from \"" + word + "\")");
        return;
      }
    }
  }

  void add_group(GroupBy group, std::string_view from) {
    if (query_.group_by.size() >= group_by_count_max)
      return;
    if (std::find(query_.group_by.begin(), query_.group_by.end(), group) != query_.group_by.end())
      return;
    understood_.push_back("group by: " + group_by_name(group) + " (from \"" + std::string(from) +
                          "\")");
    query_.group_by.push_back(std::move(group));
  }

  void find_groups() {
    struct Dimension {
      std::vector<std::string_view> words;
      GroupBy group;
    };
    const Dimension dimensions[] = {
        {{"team", "teams"}, GroupBy{GroupKind::team, 2, ""}},
        {{"agent", "agents", "bot", "bots"}, GroupBy{GroupKind::agent, 3, ""}},
        {{"vendor", "vendors", "provider", "providers", "supplier", "suppliers"},
         GroupBy{GroupKind::vendor, 0, ""}},
        {{"category", "categories"}, GroupBy{GroupKind::category, 0, ""}},
        {{"intent", "intents", "purpose", "purposes"}, GroupBy{GroupKind::intent, 0, ""}},
        {{"budget", "budgets", "node", "nodes"},
         GroupBy{GroupKind::budget, ledger::BudgetPath::depth_max, ""}},
        {{"hour", "hourly", "hours"}, GroupBy{GroupKind::hour, 0, ""}},
        {{"day", "daily", "days"}, GroupBy{GroupKind::day, 0, ""}},
        {{"week", "weekly", "weeks"}, GroupBy{GroupKind::week, 0, ""}},
        {{"month", "monthly", "months"}, GroupBy{GroupKind::month, 0, ""}},
    };
    // "by X", "per X", "each X", "every X", "which X", "top N X", "X breakdown", and plurals.
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (used_[i])
        continue;
      const std::string& word = tokens_[i];
      const bool lead =
          i > 0 &&
          (tokens_[i - 1] == "by" || tokens_[i - 1] == "per" || tokens_[i - 1] == "each" ||
           tokens_[i - 1] == "every" || tokens_[i - 1] == "which" || tokens_[i - 1] == "what" ||
           tokens_[i - 1] == "top" || tokens_[i - 1] == "biggest" || tokens_[i - 1] == "most" ||
           tokens_[i - 1] == "largest" || (tokens_[i - 1] == "and" && !query_.group_by.empty()));
      const bool counted = i > 1 && tokens_[i - 2] == "top";
      for (const Dimension& dimension : dimensions) {
        const bool plural = word == dimension.words[1] || word == "hourly" || word == "daily" ||
                            word == "weekly" || word == "monthly";
        const bool named = std::find(dimension.words.begin(), dimension.words.end(), word) !=
                           dimension.words.end();
        if (named && (lead || counted || plural)) {
          used_[i] = true;
          add_group(dimension.group, word);
        }
      }
      // "by customer", "per feature": a tag key the ledger uses.
      if (!used_[i] && (lead || counted)) {
        std::string key = word;
        if (!vocabulary_.tag_values.contains(key) && key.size() > 1 && key.back() == 's')
          key.pop_back();
        if (vocabulary_.tag_values.contains(key) && key != category_tag_key) {
          used_[i] = true;
          add_group(GroupBy{GroupKind::tag, 0, key}, word);
        }
      }
    }
  }

  void find_top() {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (used_[i])
        continue;
      const std::string& word = tokens_[i];
      if (word == "top" || word == "bottom" || word == "first") {
        used_[i] = true;
        query_.order = word == "bottom" ? Order::value_asc : Order::value_desc;
        query_.limit = 10;
        if (i + 1 < tokens_.size() && !used_[i + 1]) {
          if (auto count = small_number(tokens_[i + 1]);
              count && *count >= 1 && *count <= static_cast<int>(row_limit_max)) {
            used_[i + 1] = true;
            query_.limit = static_cast<size_t>(*count);
          }
        }
        understood_.push_back("order: " + std::string(order_name(query_.order)) + ", limit " +
                              std::to_string(query_.limit));
        return;
      }
      if (word == "most" || word == "biggest" || word == "largest" || word == "highest" ||
          word == "least" || word == "smallest" || word == "lowest" || word == "cheapest") {
        used_[i] = true;
        const bool ascending =
            word == "least" || word == "smallest" || word == "lowest" || word == "cheapest";
        query_.order = ascending ? Order::value_asc : Order::value_desc;
        // "which team spent the most": one row.
        const bool which = std::find(tokens_.begin(), tokens_.end(), "which") != tokens_.end() ||
                           std::find(tokens_.begin(), tokens_.end(), "who") != tokens_.end();
        if (which)
          query_.limit = 1;
        understood_.push_back("order: " + std::string(order_name(query_.order)) +
                              (which ? ", limit 1" : ""));
        return;
      }
    }
  }

  void find_denial_codes() {
    struct Code {
      std::vector<std::string_view> words;
      std::string_view code;
    };
    static const Code codes[] = {{{"budget", "exceeded"}, "budget_exceeded"},
                                 {{"over", "budget"}, "budget_exceeded"},
                                 {{"budget_exceeded"}, "budget_exceeded"},
                                 {{"frozen"}, "frozen"},
                                 {{"vendor_blocked"}, "vendor_blocked"},
                                 {{"breaker"}, "breaker_tripped"},
                                 {{"breaker_tripped"}, "breaker_tripped"},
                                 {{"window", "exceeded"}, "window_exceeded"},
                                 {{"window_exceeded"}, "window_exceeded"},
                                 {{"per", "transaction"}, "per_txn_exceeded"},
                                 {{"per_txn_exceeded"}, "per_txn_exceeded"},
                                 {{"approval"}, "approval_required"},
                                 {{"approval_required"}, "approval_required"},
                                 {{"vendor", "limit"}, "vendor_limit_exceeded"},
                                 {{"vendor_limit_exceeded"}, "vendor_limit_exceeded"}};
    for (const Code& code : codes) {
      for (size_t i = 0; i < tokens_.size(); ++i) {
        bool match = i + code.words.size() <= tokens_.size();
        for (size_t k = 0; match && k < code.words.size(); ++k)
          match = !used_[i + k] && tokens_[i + k] == code.words[k];
        if (!match)
          continue;
        take(i, code.words.size());
        if (std::find(query_.filters.codes.begin(), query_.filters.codes.end(), code.code) ==
            query_.filters.codes.end()) {
          query_.filters.codes.emplace_back(code.code);
          understood_.push_back("denial code: " + std::string(code.code));
        }
      }
    }
  }

  void find_kinds() {
    static const std::pair<std::string_view, std::string_view> kinds[] = {{"captures", "capture"},
                                                                          {"captured", "capture"},
                                                                          {"expired", "expire"},
                                                                          {"expiries", "expire"},
                                                                          {"one-shot", "spend"}};
    for (const auto& [word, kind] : kinds) {
      for (size_t i = 0; i < tokens_.size(); ++i) {
        if (used_[i] || tokens_[i] != word)
          continue;
        used_[i] = true;
        if (std::find(query_.filters.kinds.begin(), query_.filters.kinds.end(), kind) ==
            query_.filters.kinds.end()) {
          query_.filters.kinds.emplace_back(kind);
          understood_.push_back("kind: " + std::string(kind));
        }
      }
    }
  }

  // Budget nodes (full path or last segment), vendors (name or its distinctive label),
  // categories and tag values: only names the ledger already holds.
  void find_names() {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (used_[i])
        continue;
      const std::string& word = tokens_[i];
      if (match_budget(i, word) || match_vendor(i, word) || match_category(i, word) ||
          match_tag_value(i, word))
        continue;
    }
  }

  bool match_budget(size_t i, const std::string& word) {
    std::vector<std::string> found;
    for (const std::string& path : vocabulary_.budgets) {
      const size_t slash = path.rfind('/');
      const std::string_view last = slash == std::string::npos
                                        ? std::string_view(path)
                                        : std::string_view(path).substr(slash + 1);
      if (path == word || last == word)
        found.push_back(path);
    }
    if (found.empty())
      return false;
    // A full path is exact; a last segment shared by several nodes is ambiguous: left unknown.
    std::string chosen;
    if (std::find(found.begin(), found.end(), word) != found.end())
      chosen = word;
    else if (found.size() == 1)
      chosen = found.front();
    else
      return false;
    used_[i] = true;
    auto is_level_word = [](const std::string& word) {
      return word == "team" || word == "agent" || word == "budget" || word == "node" ||
             word == "org" || word == "organization" || word == "company" || word == "run";
    };
    if (i > 0 && is_level_word(tokens_[i - 1]))
      used_[i - 1] = true;
    if (i + 1 < tokens_.size() && is_level_word(tokens_[i + 1]))
      used_[i + 1] = true;
    // The deepest node named wins ("the research team's scout agent").
    if (query_.filters.subtree.empty() || chosen.starts_with(query_.filters.subtree + "/")) {
      query_.filters.subtree = chosen;
      understood_.push_back("subtree: " + chosen);
    }
    return true;
  }

  bool match_vendor(size_t i, const std::string& word) {
    std::vector<std::string> found;
    for (const std::string& vendor : vocabulary_.vendors) {
      const std::string lower = lowercase(vendor);
      if (lower == word) {
        found = {vendor};
        break;
      }
      // "openai" names "api.openai.com": a label other than the generic ones.
      size_t start = 0;
      while (start <= lower.size()) {
        const size_t end = std::min(lower.find('.', start), lower.size());
        const std::string label = lower.substr(start, end - start);
        if (label == word && label != "api" && label != "www" && label != "com" && label != "io" &&
            label != "ai" && label != "net" && label != "org")
          found.push_back(vendor);
        start = end + 1;
      }
    }
    if (found.empty())
      return false;
    used_[i] = true;
    if (i > 0 && (tokens_[i - 1] == "vendor" || tokens_[i - 1] == "provider"))
      used_[i - 1] = true;
    for (const std::string& vendor : found) {
      if (std::find(query_.filters.vendors.begin(), query_.filters.vendors.end(), vendor) ==
              query_.filters.vendors.end() &&
          query_.filters.vendors.size() < filter_values_max) {
        query_.filters.vendors.push_back(vendor);
        understood_.push_back("vendor: " + vendor);
      }
    }
    return true;
  }

  bool match_category(size_t i, const std::string& word) {
    for (const std::string& category : vocabulary_.categories) {
      if (lowercase(category) != word)
        continue;
      used_[i] = true;
      if (i + 1 < tokens_.size() && (tokens_[i + 1] == "category" || tokens_[i + 1] == "spend"))
        used_[i + 1] = true;
      if (i > 0 && tokens_[i - 1] == "category")
        used_[i - 1] = true;
      if (std::find(query_.filters.categories.begin(), query_.filters.categories.end(), category) ==
          query_.filters.categories.end()) {
        query_.filters.categories.push_back(category);
        understood_.push_back("category: " + category);
      }
      return true;
    }
    return false;
  }

  bool match_tag_value(size_t i, const std::string& word) {
    // "customer acme-corp": the key named just before wins; else a value only one key has.
    std::vector<std::string> keys;
    for (const auto& [key, values] : vocabulary_.tag_values) {
      if (key == category_tag_key)
        continue;
      for (const std::string& value : values) {
        if (lowercase(value) == word) {
          keys.push_back(key);
          break;
        }
      }
    }
    if (keys.empty())
      return false;
    std::string key;
    if (i > 0 && std::find(keys.begin(), keys.end(), tokens_[i - 1]) != keys.end()) {
      key = tokens_[i - 1];
      used_[i - 1] = true;
    } else if (keys.size() == 1) {
      key = keys.front();
    } else {
      return false;  // ambiguous: which key?
    }
    used_[i] = true;
    std::string value;
    for (const std::string& candidate : vocabulary_.tag_values.at(key)) {
      if (lowercase(candidate) == word)
        value = candidate;
    }
    if (query_.filters.tags.size() < tag_filters_max) {
      query_.filters.tags.emplace_back(key, value);
      std::sort(query_.filters.tags.begin(), query_.filters.tags.end());
      understood_.push_back("tag: " + key + " = " + value);
    }
    return true;
  }

  std::vector<std::string> tokens_;
  std::vector<bool> used_;
  const Vocabulary& vocabulary_;
  Micros now_;
  Query query_;
  bool metric_given_ = false;
  bool range_given_ = false;
  bool compare_ = false;
  std::vector<std::string> understood_;
};

}  // namespace

QuestionParse parse_question(std::string_view question, const Vocabulary& vocabulary, Micros now) {
  QuestionParse out;
  if (question.size() > question_length_max) {
    out.cannot_answer =
        "Cannot answer: a question is at most " + std::to_string(question_length_max) + " bytes.";
    return out;
  }
  if (!http::is_clean_text(question)) {
    out.cannot_answer =
        "Cannot answer: the question must be valid UTF-8 without control characters.";
    return out;
  }
  std::vector<std::string> tokens = tokenize(question);
  if (tokens.empty()) {
    out.cannot_answer = "Cannot answer: the question is empty.";
    return out;
  }
  if (tokens.size() > tokens_max) {
    out.cannot_answer =
        "Cannot answer: a question is at most " + std::to_string(tokens_max) + " words.";
    return out;
  }
  out = Parser(std::move(tokens), vocabulary, now).run();
  assert(out.query.has_value() != !out.cannot_answer.empty());
  return out;
}

Result<Vocabulary> read_vocabulary(store::Store& store, const std::string& subtree) {
  assert(!subtree.empty());
  const std::string root = subtree.substr(0, subtree.find('/'));
  Vocabulary vocabulary;
  vocabulary.default_subtree = subtree;
  auto nodes = store.list_subtree(root);
  if (!nodes.ok())
    return nodes.error();
  for (const ledger::BudgetNode& node : *nodes) {
    if ((node.path == subtree || node.path.starts_with(subtree + "/")) &&
        vocabulary.budgets.size() < vocabulary_names_max)
      vocabulary.budgets.push_back(node.path);
  }
  auto bounds = store.entry_bounds(root);
  if (!bounds.ok())
    return bounds.error();
  std::set<std::string> vendors, categories;
  std::map<std::string, std::set<std::string>> tags;
  int64_t after =
      std::max<int64_t>(0, bounds->max_seq - static_cast<int64_t>(vocabulary_entries_max));
  while (true) {
    auto page = store.list_entries(root, after, 2'000);
    if (!page.ok())
      return page.error();
    if (page->entries.empty())
      break;
    for (const ledger::Entry& entry : page->entries) {
      if (!entry.vendor.empty() && vendors.size() < vocabulary_names_max)
        vendors.insert(entry.vendor);
      if (entry.tags_json.size() <= 2)
        continue;
      auto parsed = boost::json::parse(entry.tags_json);
      if (!parsed.is_object())
        continue;
      for (const auto& tag : parsed.as_object()) {
        if (!tag.value().is_string())
          continue;
        auto& values = tags[std::string(tag.key())];
        if (values.size() < vocabulary_names_max)
          values.insert(std::string(tag.value().get_string()));
      }
    }
    after = page->next_after;
  }
  vocabulary.vendors.assign(vendors.begin(), vendors.end());
  if (auto found = tags.find(std::string(category_tag_key)); found != tags.end())
    vocabulary.categories.assign(found->second.begin(), found->second.end());
  for (auto& [key, values] : tags)
    vocabulary.tag_values[key].assign(values.begin(), values.end());
  return vocabulary;
}

std::string answer_sentence(const Answer& answer, const std::optional<Answer>& comparison,
                            std::string_view currency) {
  const Query& query = answer.query;
  auto money = [&](int64_t micros) {
    return ledger::Money::from_micros(micros).to_string() + " " + std::string(currency);
  };
  const bool is_money = query.metric == Metric::spend || query.metric == Metric::holds_open;
  std::string what;
  switch (query.metric) {
    case Metric::spend:
      what = "Spend";
      break;
    case Metric::count:
      what = "Number of settled spends";
      break;
    case Metric::denials:
      what = "Denials";
      break;
    case Metric::holds_open:
      what = "Open holds";
      break;
    case Metric::avg:
      what = "Average spend";
      break;
  }
  std::string sentence = what + " in " + query.filters.subtree;
  if (!query.filters.vendors.empty() || !query.filters.categories.empty() ||
      !query.filters.tags.empty()) {
    std::string filters;
    for (const std::string& vendor : query.filters.vendors)
      filters += (filters.empty() ? "" : ", ") + std::string("vendor ") + vendor;
    for (const std::string& category : query.filters.categories)
      filters += (filters.empty() ? "" : ", ") + std::string("category ") + category;
    for (const auto& [key, value] : query.filters.tags)
      filters += (filters.empty() ? "" : ", ") + key + " " + value;
    sentence += " (" + filters + ")";
  }
  sentence +=
      " for " + (query.range.text == "all" ? std::string("all time") : query.range.text) + ": ";
  AnswerRow total{{}, answer.total_amount_micros, answer.total_count};
  const int64_t total_value = row_value(query.metric, total);
  sentence +=
      is_money || query.metric == Metric::avg ? money(total_value) : std::to_string(total_value);
  if (query.metric == Metric::holds_open)
    sentence += " in " + std::to_string(answer.total_count) + " holds";
  if (!query.group_by.empty()) {
    sentence += " across " + std::to_string(answer.groups) + " " +
                group_by_name(query.group_by.front()) + " groups";
    if (!answer.rows.empty()) {
      const AnswerRow& first = answer.rows.front();
      std::string key;
      for (const auto& part : first.keys)
        key += (key.empty() ? "" : " / ") + part.value_or("(none)");
      const int64_t value = row_value(query.metric, first);
      sentence += std::string("; ") +
                  (query.order == Order::value_asc ? "the least: "
                   : query.order == Order::key_asc ? "first: "
                                                   : "the most: ") +
                  key + " (" +
                  (is_money || query.metric == Metric::avg ? money(value) : std::to_string(value)) +
                  ")";
    }
  }
  if (comparison) {
    AnswerRow before{{}, comparison->total_amount_micros, comparison->total_count};
    const int64_t previous = row_value(query.metric, before);
    sentence +=
        "; " + comparison->query.range.text + ": " +
        (is_money || query.metric == Metric::avg ? money(previous) : std::to_string(previous));
    if (previous != 0) {
      const long double change =
          (static_cast<long double>(total_value) - static_cast<long double>(previous)) * 100.0L /
          static_cast<long double>(previous);
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, " (%+.1Lf%%)", change);
      sentence += buffer;
    }
  }
  return sentence + ".";
}

}  // namespace stub::query
