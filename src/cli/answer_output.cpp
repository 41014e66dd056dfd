#include "cli/answer_output.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cassert>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <vector>

#include "query/ask.hpp"
#include "query/compiler.hpp"
#include "query/query.hpp"
#include "store/store.hpp"

namespace stub::cli {

namespace {

ledger::Micros wall_clock() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string cell(const boost::json::value* value) {
  if (value == nullptr || value->is_null())
    return "(none)";
  if (value->is_string())
    return std::string(value->get_string());
  return boost::json::serialize(*value);
}

std::vector<std::string> columns_of(const boost::json::object& answer) {
  std::vector<std::string> columns;
  if (const auto* query = answer.if_contains("query"); query && query->is_object()) {
    if (const auto* groups = query->get_object().if_contains("group_by");
        groups && groups->is_array()) {
      for (const auto& group : groups->get_array())
        columns.emplace_back(group.as_string());
    }
  }
  columns.insert(columns.end(), {"value", "amount", "count"});
  return columns;
}

const boost::json::array& rows_of(const boost::json::object& answer) {
  static const boost::json::array empty;
  const auto* rows = answer.if_contains("rows");
  return rows && rows->is_array() ? rows->get_array() : empty;
}

std::string csv_cell(std::string text) {
  if (!text.empty() &&
      (text[0] == '=' || text[0] == '+' || text[0] == '@' ||
       (text[0] == '-' && text.find_first_not_of("-0123456789.") != std::string::npos)))
    text.insert(text.begin(), '\'');
  if (text.find_first_of(",\"\r\n") == std::string::npos)
    return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"')
      out += '"';
    out += c;
  }
  return out + "\"";
}

std::string html_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Result<boost::json::object> offline_answer(const AnswerSource& source, const std::string& route,
                                           const boost::json::object& body) {
  store::StoreOptions options;
  options.read_only = true;
  options.read_connections = 1;
  auto opened = store::open_store(source.db, options);
  if (!opened.ok())
    return opened.error();
  store::Store& store = **opened;
  const ledger::Micros now = wall_clock();
  if (route == "/v1/ask") {
    query::AskOptions ask;
    if (const auto* question = body.if_contains("question"); question && question->is_string())
      ask.question = std::string(question->get_string());
    if (const auto* subtree = body.if_contains("subtree"); subtree && subtree->is_string())
      ask.subtree = std::string(subtree->get_string());
    ask.now = now;
    // Offline, the LLM path is off: its calls are metered through a running server's ledger.
    return query::ask(store, ask);
  }
  auto parsed = query::parse_query(boost::json::value(body), now);
  if (!parsed.ok())
    return parsed.error();
  if (Status status = query::confine_to_scope(*parsed, ""); !status.ok())
    return status.error();
  auto answer = query::run_query(store, *parsed);
  if (!answer.ok())
    return answer.error();
  return query::answer_to_json(*answer);
}

}  // namespace

void add_answer_source_options(CLI::App& command, AnswerSource& source) {
  add_client_options(command, source.client);
  command.add_option("--db", source.db,
                     "Answer offline from this database file (opened read-only; no server)");
}

Result<boost::json::object> fetch_answer(const AnswerSource& source, const std::string& route,
                                         const boost::json::object& body) {
  if (!source.db.empty())
    return offline_answer(source, route, body);
  auto client = make_client(source.client);
  if (!client)
    return Error{ErrorCode::invalid_input, "no_client", "Cannot reach the server."};
  auto response = client->request("POST", route, boost::json::serialize(body));
  if (!response.ok())
    return response.error();
  boost::system::error_code code;
  boost::json::value parsed = boost::json::parse(response->body, code);
  if (code || !parsed.is_object())
    return Error{ErrorCode::internal, "bad_answer", "The server's answer is not JSON."};
  if (response->status != 200) {
    std::string message = response->body;
    if (const auto* error = parsed.as_object().if_contains("error"); error && error->is_object()) {
      if (const auto* text = error->get_object().if_contains("message"); text && text->is_string())
        message = std::string(text->get_string());
    }
    return Error{response->status == 403 ? ErrorCode::forbidden : ErrorCode::invalid_input,
                 "http_" + std::to_string(response->status), message};
  }
  return std::move(parsed.as_object());
}

int print_answer(const boost::json::object& answer, const std::string& format) {
  if (format == "json") {
    std::cout << pretty_json(answer) << "\n";
  } else if (format == "csv") {
    print_csv(answer, std::cout);
  } else {
    if (const auto* sentence = answer.if_contains("answer"); sentence && sentence->is_string())
      std::cout << std::string(sentence->get_string()) << "\n";
    const auto* answered = answer.if_contains("answered");
    if (answered == nullptr || !answered->is_bool() || answered->get_bool())
      print_table(answer, std::cout);
  }
  return 0;
}

void print_table(const boost::json::object& answer, std::ostream& out) {
  const std::vector<std::string> columns = columns_of(answer);
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows_of(answer)) {
    std::vector<std::string> line;
    for (const std::string& column : columns)
      line.push_back(cell(row.as_object().if_contains(column)));
    cells.push_back(std::move(line));
  }
  std::vector<size_t> widths;
  for (size_t i = 0; i < columns.size(); ++i) {
    size_t width = columns[i].size();
    for (const auto& line : cells)
      width = std::max(width, line[i].size());
    widths.push_back(std::min<size_t>(width, 60));
  }
  auto print_line = [&](const std::vector<std::string>& line) {
    for (size_t i = 0; i < line.size(); ++i) {
      const bool numeric = i + 3 >= line.size();
      out << (i == 0 ? "" : "  ");
      if (numeric)
        out << std::right << std::setw(static_cast<int>(widths[i])) << line[i];
      else
        out << std::left << std::setw(static_cast<int>(widths[i])) << line[i].substr(0, 60);
    }
    out << "\n";
  };
  print_line(columns);
  for (const auto& line : cells)
    print_line(line);
  if (const auto* total = answer.if_contains("total"); total && total->is_object()) {
    out << "total: " << cell(total->get_object().if_contains("amount")) << " in "
        << cell(total->get_object().if_contains("count")) << " entries\n";
  }
}

void print_csv(const boost::json::object& answer, std::ostream& out) {
  const std::vector<std::string> columns = columns_of(answer);
  for (size_t i = 0; i < columns.size(); ++i)
    out << (i == 0 ? "" : ",") << csv_cell(columns[i]);
  out << "\n";
  for (const auto& row : rows_of(answer)) {
    for (size_t i = 0; i < columns.size(); ++i) {
      const auto* value = row.as_object().if_contains(columns[i]);
      out << (i == 0 ? "" : ",")
          << csv_cell(value == nullptr || value->is_null() ? "" : cell(value));
    }
    out << "\n";
  }
}

std::string answer_html(const boost::json::object& answer, const std::string& title) {
  const std::vector<std::string> columns = columns_of(answer);
  const boost::json::array& rows = rows_of(answer);
  // The bar chart: one bar per row, scaled to the largest value.
  double largest = 0;
  std::vector<std::pair<std::string, double>> bars;
  for (const auto& row : rows) {
    const auto& object = row.as_object();
    std::string label;
    for (size_t i = 0; i + 3 < columns.size(); ++i)
      label += (label.empty() ? "" : " / ") + cell(object.if_contains(columns[i]));
    const std::string value = cell(object.if_contains("value"));
    const double number = std::strtod(value.c_str(), nullptr);
    largest = std::max(largest, number);
    bars.emplace_back(label.empty() ? "total" : label, number);
  }
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       << "<meta name=\"viewport\" content=\"width=device-width\"><title>" << html_escape(title)
       << "</title><style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
       << "table{border-collapse:collapse;margin-top:1em}td,th{padding:4px 10px;border-bottom:1px "
       << "solid #ddd;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}"
       << "svg text{font:12px system-ui,sans-serif}</style></head><body>\n";
  html << "<h1>" << html_escape(title) << "</h1>\n";
  if (const auto* query = answer.if_contains("query"); query && query->is_object()) {
    html << "<p>Query: <code>" << html_escape(boost::json::serialize(*query)) << "</code></p>\n";
  }
  const int bar_height = 22;
  const int chart_width = 720;
  const int label_width = 260;
  html << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << chart_width << "\" height=\""
       << std::max<size_t>(1, bars.size()) * bar_height + 4 << "\" role=\"img\">\n";
  for (size_t i = 0; i < bars.size(); ++i) {
    const double width =
        largest > 0 ? bars[i].second / largest * (chart_width - label_width - 90) : 0;
    const size_t y = i * bar_height;
    html << "<text x=\"0\" y=\"" << y + 15 << "\">" << html_escape(bars[i].first.substr(0, 40))
         << "</text><rect x=\"" << label_width << "\" y=\"" << y + 3 << "\" width=\"" << std::fixed
         << std::setprecision(1) << width << "\" height=\"" << bar_height - 6
         << "\" fill=\"#3b82f6\"/><text x=\"" << label_width + width + 6 << "\" y=\"" << y + 15
         << "\">" << html_escape(cell(rows[i].as_object().if_contains("value"))) << "</text>\n";
  }
  html << "</svg>\n<table><thead><tr>";
  for (const std::string& column : columns)
    html << "<th>" << html_escape(column) << "</th>";
  html << "</tr></thead><tbody>\n";
  for (const auto& row : rows) {
    html << "<tr>";
    for (size_t i = 0; i < columns.size(); ++i) {
      html << (i + 3 >= columns.size() ? "<td class=\"n\">" : "<td>")
           << html_escape(cell(row.as_object().if_contains(columns[i]))) << "</td>";
    }
    html << "</tr>\n";
  }
  html << "</tbody></table>\n";
  if (const auto* total = answer.if_contains("total"); total && total->is_object()) {
    html << "<p>Total: " << html_escape(cell(total->get_object().if_contains("amount"))) << " in "
         << html_escape(cell(total->get_object().if_contains("count"))) << " entries.</p>\n";
  }
  html << "</body></html>\n";
  return html.str();
}

}  // namespace stub::cli
