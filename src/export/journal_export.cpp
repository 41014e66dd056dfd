#include "export/journal_export.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cassert>
#include <set>
#include <utility>
#include <vector>

#include "ledger/chain.hpp"
#include "ledger/money.hpp"
#include "query/compiler.hpp"
#include "query/query.hpp"

namespace stub::journal {

namespace {

// Text is flushed to the sink in chunks of about this size.
constexpr size_t chunk_bytes = 256 * 1024;

bool is_clean_component(std::string_view name) {
  if (name.empty() || name.size() > 64)
    return false;
  const auto allowed = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!allowed(name.front()))
    return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return allowed(c) || c == '-'; });
}

std::string day_of(Micros ts) {
  return ledger::format_timestamp(ts).substr(0, 10);
}

// A double-quoted string for beancount (backslash escapes).
std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

// Text inside an hledger description or tag value: `;` would start a comment, `|` splits payee
// from note, and a comma ends a tag value.
std::string hledger_text(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == ';' || c == ',')
      c = ' ';
    else if (c == '|')
      c = '/';
  }
  return out;
}

// A metadata or tag name: letters, digits, '_' and '-', starting with a lowercase letter.
std::string metadata_key(std::string_view key) {
  std::string out = "tag-";
  for (char c : key) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-';
    out += keep ? c : '_';
  }
  return out;
}

// A CSV field (RFC 4180), with text a spreadsheet would run as a formula defused by a leading
// apostrophe (cells starting with = + - @ are formulas in Excel and LibreOffice).
std::string csv_field(std::string_view text, bool is_text = true) {
  std::string value(text);
  if (is_text && !value.empty() &&
      (value[0] == '=' || value[0] == '+' || value[0] == '-' || value[0] == '@'))
    value.insert(value.begin(), '\'');
  if (value.find_first_of(",\"\r\n") == std::string::npos)
    return value;
  std::string out = "\"";
  for (char c : value) {
    if (c == '"')
      out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string amount_text(int64_t micros) {
  // Always six decimals, as the commodity declarations say.
  const bool negative = micros < 0;
  const uint64_t magnitude =
      negative ? static_cast<uint64_t>(-(micros + 1)) + 1 : static_cast<uint64_t>(micros);
  std::string fraction = std::to_string(magnitude % 1'000'000);
  fraction.insert(fraction.begin(), 6 - fraction.size(), '0');
  return (negative ? "-" : "") + std::to_string(magnitude / 1'000'000) + "." + fraction;
}

bool within_subtree(const std::string& budget, const std::string& subtree) {
  return budget == subtree ||
         (budget.size() > subtree.size() && budget.compare(0, subtree.size(), subtree) == 0 &&
          budget[subtree.size()] == '/');
}

bool settles_money(const ledger::Entry& entry) {
  return (entry.kind == "spend" || entry.kind == "capture" || entry.kind == "expire") &&
         entry.amount && entry.amount->is_positive();
}

}  // namespace

// Formats entries; declared in the header so JournalExport can own one.
class Writer {
 public:
  Writer(Format format, std::string currency, const Sink& sink)
      : format_(format), currency_(std::move(currency)), sink_(sink) {}

  bool header(const ExportOptions& options) {
    const std::string range =
        "from " + ledger::format_timestamp(std::max<Micros>(options.from, 0)) + " to " +
        (options.to == std::numeric_limits<Micros>::max() ? std::string("now")
                                                          : ledger::format_timestamp(options.to));
    switch (format_) {
      case Format::csv:
        out_ +=
            "seq,ts,date,kind,budget,vendor,category,intent,amount,currency,hold_id,debit_account,"
            "credit_account,tags,hash\n";
        break;
      case Format::hledger:
        out_ += "; Stub export of " + options.subtree + ", " + range + "\n";
        out_ += "; one transaction per settled entry; seq and hash tie each to the chain\n";
        out_ += "decimal-mark .\n";
        out_ += "commodity 1,000.000000 " + currency_ + "\n\n";
        break;
      case Format::beancount:
        out_ += "; Stub export of " + options.subtree + ", " + range + "\n";
        out_ += "option \"operating_currency\" \"" + currency_ + "\"\n";
        out_ += "1970-01-01 commodity " + currency_ + "\n\n";
        break;
    }
    return flush(false);
  }

  bool entry(const ledger::Entry& entry, ExportSummary& summary) {
    assert(settles_money(entry));
    const int64_t micros = entry.amount->micros();
    const std::string debit = expense_account(entry.budget);
    const std::string credit = vendor_account(entry.vendor);
    if (first_day_.empty())
      first_day_ = day_of(entry.ts);
    accounts_.insert(debit);
    accounts_.insert(credit);
    summary.account_totals[debit] += micros;
    summary.account_totals[credit] -= micros;
    summary.amount_micros += micros;
    ++summary.transactions;
    boost::json::object tags;
    if (auto parsed = boost::json::parse(entry.tags_json); parsed.is_object())
      tags = parsed.as_object();
    std::string category;
    if (const auto* value = tags.if_contains(query::category_tag_key); value && value->is_string())
      category = std::string(value->get_string());
    const std::string amount = amount_text(micros);
    const std::string date = day_of(entry.ts);
    const std::string vendor = entry.vendor.empty() ? std::string("unknown") : entry.vendor;
    switch (format_) {
      case Format::csv:
        out_ += std::to_string(entry.seq) + "," + ledger::format_timestamp(entry.ts) + "," + date +
                "," + entry.kind + "," + csv_field(entry.budget) + "," + csv_field(entry.vendor) +
                "," + csv_field(category) + "," + csv_field(entry.intent) + "," + amount + "," +
                currency_ + "," + csv_field(entry.hold_id) + "," + csv_field(debit) + "," +
                csv_field(credit) + "," + csv_field(entry.tags_json, false) + "," + entry.hash +
                "\n";
        break;
      case Format::hledger:
        out_ += date + " * " + hledger_text(vendor) + " | " +
                hledger_text(entry.intent.empty() ? entry.kind : entry.intent) + "\n";
        out_ += "    ; seq:" + std::to_string(entry.seq) + "\n";
        out_ += "    ; hash:" + entry.hash + "\n";
        out_ += "    ; kind:" + entry.kind + "\n";
        out_ += "    ; budget:" + entry.budget + "\n";
        if (!entry.hold_id.empty())
          out_ += "    ; hold:" + hledger_text(entry.hold_id) + "\n";
        if (!entry.intent.empty())
          out_ += "    ; intent:" + hledger_text(entry.intent) + "\n";
        for (const auto& tag : tags) {
          if (tag.value().is_string())
            out_ += "    ; " + metadata_key(tag.key()) + ":" +
                    hledger_text(tag.value().get_string()) + "\n";
        }
        out_ += "    " + debit + "    " + amount + " " + currency_ + "\n";
        out_ += "    " + credit + "    -" + amount + " " + currency_ + "\n\n";
        break;
      case Format::beancount:
        out_ += date + " * " + quoted(vendor) + " " +
                quoted(entry.intent.empty() ? entry.kind : entry.intent) + "\n";
        out_ += "  seq: " + std::to_string(entry.seq) + "\n";
        out_ += "  hash: " + quoted(entry.hash) + "\n";
        out_ += "  kind: " + quoted(entry.kind) + "\n";
        out_ += "  budget: " + quoted(entry.budget) + "\n";
        if (!entry.hold_id.empty())
          out_ += "  hold: " + quoted(entry.hold_id) + "\n";
        if (!entry.intent.empty())
          out_ += "  intent: " + quoted(entry.intent) + "\n";
        out_ += "  tags: " + quoted(entry.tags_json) + "\n";
        for (const auto& tag : tags) {
          if (tag.value().is_string())
            out_ += "  " + metadata_key(tag.key()) + ": " + quoted(tag.value().get_string()) + "\n";
        }
        out_ += "  " + debit + "  " + amount + " " + currency_ + "\n";
        out_ += "  " + credit + "  -" + amount + " " + currency_ + "\n\n";
        break;
    }
    return out_.size() < chunk_bytes || flush(false);
  }

  // The account declarations, once every account is known (both tools accept them anywhere in
  // the file; beancount needs each open dated on or before the account's first use).
  bool footer() {
    if (format_ == Format::hledger) {
      for (const std::string& account : accounts_)
        out_ += "account " + account + "\n";
    } else if (format_ == Format::beancount) {
      for (const std::string& account : accounts_)
        out_ += first_day_ + " open " + account + " " + currency_ + "\n";
    }
    return flush(true);
  }

  bool flush(bool always) {
    if (out_.empty() || (!always && out_.size() < chunk_bytes))
      return true;
    const bool go_on = sink_(out_);
    out_.clear();
    return go_on;
  }

 private:
  Format format_;
  std::string currency_;
  const Sink& sink_;
  std::string out_;
  std::string first_day_;
  std::set<std::string> accounts_;  // bounded by the subtree's nodes and vendors
};

std::optional<Format> parse_format(std::string_view text) {
  if (text == "csv")
    return Format::csv;
  if (text == "hledger")
    return Format::hledger;
  if (text == "beancount")
    return Format::beancount;
  return std::nullopt;
}

std::string_view format_name(Format format) {
  switch (format) {
    case Format::csv:
      return "csv";
    case Format::hledger:
      return "hledger";
    case Format::beancount:
      return "beancount";
  }
  return "csv";
}

std::string account_component(std::string_view name) {
  if (is_clean_component(name)) {
    std::string out(name);
    if (out[0] >= 'a' && out[0] <= 'z')
      out[0] = static_cast<char>(out[0] - 'a' + 'A');
    return out;
  }
  std::string readable;
  for (char c : name.substr(0, 48)) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
      readable += c;
    else if (c >= 'A' && c <= 'Z')
      readable += static_cast<char>(c - 'A' + 'a');
    else if (!readable.empty() && readable.back() != '-')
      readable += '-';
  }
  while (!readable.empty() && readable.back() == '-')
    readable.pop_back();
  if (readable.empty())
    readable = "x";
  readable[0] = readable[0] >= 'a' && readable[0] <= 'z'
                    ? static_cast<char>(readable[0] - 'a' + 'A')
                    : readable[0];
  return readable + "-" + ledger::sha256_hex(name).substr(0, 8);
}

std::string expense_account(std::string_view budget_path) {
  std::string out = "Expenses:Agents";
  size_t start = 0;
  while (start <= budget_path.size()) {
    const size_t end = std::min(budget_path.find('/', start), budget_path.size());
    out += ":" + account_component(budget_path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string vendor_account(std::string_view vendor) {
  return "Liabilities:Vendors:" + account_component(vendor.empty() ? "unknown" : vendor);
}

Result<std::unique_ptr<JournalExport>> JournalExport::open(store::Store& store,
                                                           const ExportOptions& options) {
  assert(!options.subtree.empty() && options.page_size > 0);
  const std::string root = options.subtree.substr(0, options.subtree.find('/'));
  auto node = store.get_budget(root);
  if (!node.ok())
    return node.error();
  if (!node->has_value())
    return Error{ErrorCode::not_found, "budget_not_found", "No budget " + root + "."};
  auto subtree = store.get_budget(options.subtree);
  if (!subtree.ok())
    return subtree.error();
  if (!subtree->has_value())
    return Error{ErrorCode::not_found, "budget_not_found", "No budget " + options.subtree + "."};
  auto range = query::seq_range_for_time(store, root, options.from, options.to);
  if (!range.ok())
    return range.error();
  std::unique_ptr<JournalExport> exporter(new JournalExport(store, options));
  exporter->root_ = root;
  exporter->summary_.currency = (*node)->currency;
  exporter->after_ = range->first - 1;
  exporter->last_seq_ = range->last;
  exporter->writer_ =
      std::make_unique<Writer>(options.format, exporter->summary_.currency, exporter->sink_);
  const bool header_written = exporter->writer_->header(options);
  assert(header_written);  // the sink only appends
  (void)header_written;
  return exporter;
}

JournalExport::JournalExport(store::Store& store, ExportOptions options)
    : store_(store), options_(std::move(options)), sink_([this](std::string_view chunk) {
        pending_.append(chunk);
        return true;
      }) {}

JournalExport::~JournalExport() = default;

Result<std::string> JournalExport::next() {
  if (done_)
    return std::string();
  if (after_ >= last_seq_) {
    writer_->footer();
    done_ = true;
    return std::exchange(pending_, std::string());
  }
  const size_t limit = static_cast<size_t>(
      std::min<int64_t>(static_cast<int64_t>(options_.page_size), last_seq_ - after_));
  auto page = store_.list_entries(root_, after_, limit);
  if (!page.ok())
    return page.error();
  if (page->entries.empty()) {
    after_ = last_seq_;  // nothing more was written: the footer comes next
    return std::exchange(pending_, std::string());
  }
  for (const ledger::Entry& entry : page->entries) {
    assert(entry.seq > after_);
    if (entry.seq > last_seq_)
      break;
    ++summary_.entries_read;
    if (entry.ts < options_.from || entry.ts >= options_.to || !settles_money(entry) ||
        !within_subtree(entry.budget, options_.subtree))
      continue;
    writer_->entry(entry, summary_);
  }
  after_ = std::min(page->next_after, last_seq_);
  writer_->flush(true);
  return std::exchange(pending_, std::string());
}

Result<ExportSummary> export_journal(store::Store& store, const ExportOptions& options,
                                     const Sink& sink, const Progress& progress) {
  auto exporter = JournalExport::open(store, options);
  if (!exporter.ok())
    return exporter.error();
  JournalExport& source = **exporter;
  while (!source.done()) {
    auto text = source.next();
    if (!text.ok())
      return text.error();
    if (!text->empty() && !sink(*text)) {
      ExportSummary summary = source.summary();
      summary.stopped = true;
      return summary;
    }
    if (progress && !source.done())
      progress(source.position(), source.last_seq());
  }
  return source.summary();
}

}  // namespace stub::journal
