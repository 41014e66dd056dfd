#pragma once

// How the query commands (`stub query`, `stub ask`, `stub report`) get an answer, from a server
// (POST /v1/query, /v1/ask) or offline from a database file opened read-only (--db), and how
// they print it: a table, CSV, JSON, or a self-contained HTML page.

#include <boost/json/object.hpp>
#include <ostream>
#include <string>

#include "cli/client_settings.hpp"
#include "ledger/result.hpp"

namespace stub::cli {

struct AnswerSource {
  ClientSettings client;
  std::string db;  // non-empty: offline, on this database file
};

void add_answer_source_options(CLI::App& command, AnswerSource& source);

// POSTs `body` to `route` ("/v1/query" or "/v1/ask") or runs it offline; the answer's JSON.
Result<boost::json::object> fetch_answer(const AnswerSource& source, const std::string& route,
                                         const boost::json::object& body);

// Prints an answer in `format` (table: the sentence, if any, then the table; csv; json) on
// stdout; returns the exit code.
int print_answer(const boost::json::object& answer, const std::string& format);

// The rows as an aligned text table (group columns, then value, amount, count).
void print_table(const boost::json::object& answer, std::ostream& out);
// The rows as CSV (RFC 4180; text a spreadsheet would run as a formula is defused).
void print_csv(const boost::json::object& answer, std::ostream& out);
// A self-contained HTML page (inline CSS and SVG bar chart, no external assets).
std::string answer_html(const boost::json::object& answer, const std::string& title);

}  // namespace stub::cli
