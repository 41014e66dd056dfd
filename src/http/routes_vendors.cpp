// Routes: Vendors: the metering proxy's upstreams (docs/proxy.md). Admin only. The credential
// is sealed here, at the edge (proxy/secret_box.hpp), before it reaches the core: the command,
// the row and the entries only ever hold the sealed form or nothing, and no answer carries it.

#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/render.hpp"
#include "http/request_fields.hpp"
#include "http/text_checks.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/canonical_json.hpp"
#include "ledger/money.hpp"
#include "proxy/secret_box.hpp"

namespace stub::http::detail {

namespace {

constexpr size_t credential_length_max = 4'096;
constexpr size_t header_name_length_max = 64;
constexpr size_t cost_field_length_max = 128;
constexpr int64_t exponent_max = 18;

Error invalid(std::string subcode, std::string message) {
  return Error::invalid(std::move(subcode), std::move(message));
}

// An http:// or https:// URL with a host and nothing a base URL must not carry (user info,
// query, fragment): the proxy appends the request's path to it.
Status check_base_url(std::string_view url) {
  const Error bad = invalid("invalid_base_url",
                            "Field \"base_url\" must be an http:// or https:// URL with a host and "
                            "no user info, query or fragment (at most 2048 bytes).");
  if (url.size() > 2'048 || !is_clean_text(url))
    return bad;
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || !parsed->has_authority() || parsed->host_address().empty() ||
      parsed->has_userinfo() || parsed->has_query() || parsed->has_fragment()) {
    return bad;
  }
  if (parsed->scheme() != "http" && parsed->scheme() != "https")
    return bad;
  if (parsed->has_port()) {
    const auto port = parsed->port_number();
    if (port == 0)
      return bad;
  }
  return Status::success();
}

// An HTTP field name (RFC 9110 token).
bool is_token(std::string_view text) {
  if (text.empty() || text.size() > header_name_length_max)
    return false;
  for (char c : text) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alpha && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos)
      return false;
  }
  return true;
}

// A cost rule: {"type":"fixed","amount":"0.05"} or
// {"type":"field","field":"amount","exponent":2,"source":"json"|"form"} (source optional: the
// request's Content-Type decides). Returned canonical, amounts as decimal strings.
Result<boost::json::value> parse_cost(const boost::json::value& cost) {
  if (cost.is_null())
    return boost::json::value(nullptr);
  const Error bad = invalid(
      "invalid_cost",
      "Field \"cost\" must be {\"type\":\"fixed\",\"amount\":\"0.05\"} or {\"type\":\"field\","
      "\"field\":\"amount\",\"exponent\":2} (exponent 0 to 18; optional \"source\": \"json\" "
      "or \"form\").");
  if (!cost.is_object())
    return bad;
  const boost::json::object& rule = cost.get_object();
  const auto* type = rule.if_contains("type");
  if (type == nullptr || !type->is_string())
    return bad;
  if (type->get_string() == "fixed") {
    const auto* amount = rule.if_contains("amount");
    if (rule.size() != 2 || amount == nullptr || !amount->is_string())
      return bad;
    const auto money = ledger::Money::parse(amount->get_string());
    if (!money || money->micros() < 0)
      return bad;
    return boost::json::value(
        boost::json::object{{"type", "fixed"}, {"amount", money->to_string()}});
  }
  if (type->get_string() != "field")
    return bad;
  boost::json::object out{{"type", "field"}};
  for (const auto& member : rule) {
    if (member.key() == "type")
      continue;
    if (member.key() == "field") {
      if (!member.value().is_string() || member.value().get_string().empty() ||
          member.value().get_string().size() > cost_field_length_max ||
          !is_clean_text(member.value().get_string())) {
        return bad;
      }
      out["field"] = member.value();
    } else if (member.key() == "exponent") {
      if (!member.value().is_int64() || member.value().get_int64() < 0 ||
          member.value().get_int64() > exponent_max) {
        return bad;
      }
      out["exponent"] = member.value();
    } else if (member.key() == "source") {
      if (!member.value().is_string() ||
          (member.value().get_string() != "json" && member.value().get_string() != "form")) {
        return bad;
      }
      out["source"] = member.value();
    } else {
      return bad;
    }
  }
  if (!out.contains("field") || !out.contains("exponent"))
    return bad;
  return boost::json::value(std::move(out));
}

// {"connect_ms":..,"first_byte_ms":..,"idle_ms":..}, each 1 ms to 10 minutes, any subset.
Result<boost::json::value> parse_timeouts(const boost::json::value& timeouts) {
  if (timeouts.is_null())
    return boost::json::value(nullptr);
  const Error bad =
      invalid("invalid_timeouts",
              "Field \"timeouts\" must be an object of \"connect_ms\", \"first_byte_ms\" and "
              "\"idle_ms\", each a whole number of milliseconds from 1 to 600000.");
  if (!timeouts.is_object())
    return bad;
  boost::json::object out;
  for (const auto& member : timeouts.get_object()) {
    if (member.key() != "connect_ms" && member.key() != "first_byte_ms" &&
        member.key() != "idle_ms") {
      return bad;
    }
    if (!member.value().is_int64() || member.value().get_int64() < 1 ||
        member.value().get_int64() > 600'000) {
      return bad;
    }
    out[member.key()] = member.value();
  }
  return boost::json::value(std::move(out));
}

}  // namespace

// PUT/GET/DELETE /v1/vendors/{name}, GET /v1/vendors.
awaitable<std::optional<ApiReply>> Handler::route_vendors() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  if (n < 2 || s[1] != "vendors")
    co_return std::nullopt;
  if (n == 2 && method == "GET")
    co_return co_await list_vendors();
  if (n == 3 && method == "PUT")
    co_return co_await put_vendor(s[2]);
  if (n == 3 && method == "GET")
    co_return co_await get_vendor(s[2]);
  if (n == 3 && method == "DELETE")
    co_return co_await delete_vendor(s[2]);
  co_return std::nullopt;
}

Status Handler::check_vendor_name(const std::string& name) {
  const auto parsed = BudgetPath::parse(name);
  if (!parsed || !parsed->is_root()) {
    return invalid("invalid_vendor_name",
                   "Vendor name \"" + name + "\" is not [a-z0-9][a-z0-9_-]{0,62}.");
  }
  return Status::success();
}

awaitable<Result<ledger::Vendor>> Handler::load_vendor(const std::string& name) {
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto vendor_work = [this, name] { return context_.store.get_vendor(name); };
  auto vendor = co_await run_blocking(context_.read_pool, std::move(vendor_work));
  if (!vendor.ok())
    co_return vendor.error();
  if (!vendor.value())
    co_return Error{ErrorCode::not_found, "vendor_not_found", "No vendor " + name + "."};
  co_return *vendor.value();
}

awaitable<ApiReply> Handler::put_vendor(const std::string& name) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  if (Status valid = check_vendor_name(name); !valid.ok())
    co_return error_reply(valid.error());
  if (Status known = reject_unknown_fields(body_, {"root", "kind", "base_url", "credential",
                                                   "credential_header", "cost", "timeouts"});
      !known.ok()) {
    co_return error_reply(known.error());
  }
  const boost::json::object& body = body_.object;
  boost::json::object patch;
  if (const auto* kind = body.if_contains("kind")) {
    if (!kind->is_string() ||
        (kind->get_string() != "openai" && kind->get_string() != "anthropic" &&
         kind->get_string() != "generic")) {
      co_return error_reply(invalid(
          "invalid_kind", "Field \"kind\" must be \"openai\", \"anthropic\" or \"generic\"."));
    }
    patch["kind"] = *kind;
  }
  if (const auto* url = body.if_contains("base_url")) {
    if (!url->is_string())
      co_return error_reply(check_base_url("\x01").error());
    if (Status valid = check_base_url(url->get_string()); !valid.ok())
      co_return error_reply(valid.error());
    std::string text(url->get_string());
    while (text.size() > 1 && text.back() == '/')
      text.pop_back();  // the request's path starts with '/'
    patch["base_url"] = text;
  }
  if (const auto* header = body.if_contains("credential_header")) {
    if (header->is_null()) {
      patch["credential_header"] = nullptr;  // back to the kind's default
    } else if (!header->is_string() || !is_token(header->get_string())) {
      co_return error_reply(invalid("invalid_credential_header",
                                    "Field \"credential_header\" must be an HTTP header name "
                                    "(1 to 64 token characters), or null for the default."));
    } else {
      patch["credential_header"] = *header;
    }
  }
  if (const auto* cost = body.if_contains("cost")) {
    auto parsed = parse_cost(*cost);
    if (!parsed.ok())
      co_return error_reply(parsed.error());
    const auto* kind = body.if_contains("kind");
    if (!parsed->is_null() && kind != nullptr && kind->get_string() != "generic") {
      co_return error_reply(invalid("cost_not_applicable",
                                    "Field \"cost\" applies to generic vendors; openai and "
                                    "anthropic calls are priced from prices/llm.json."));
    }
    patch["cost"] = std::move(parsed).value();
  }
  if (const auto* timeouts = body.if_contains("timeouts")) {
    auto parsed = parse_timeouts(*timeouts);
    if (!parsed.ok())
      co_return error_reply(parsed.error());
    patch["timeouts"] = std::move(parsed).value();
  }
  ledger::VendorSettings settings;
  settings.name = name;
  settings.settings_patch_json = ledger::canonical_json(patch);
  if (const auto* credential = body.if_contains("credential")) {
    if (!credential->is_string() || credential->get_string().empty() ||
        credential->get_string().size() > credential_length_max) {
      co_return error_reply(invalid("invalid_credential",
                                    "Field \"credential\" must be a string of 1 to 4096 bytes."));
    }
    if (Status clean = check_text(credential->get_string(), "credential"); !clean.ok())
      co_return error_reply(clean.error());
    if (context_.secret_box == nullptr) {
      co_return error_reply(Error{ErrorCode::unavailable, "secret_key_missing",
                                  "This server has no secret key to seal vendor credentials "
                                  "with: start it with STUB_SECRET_KEY or --secret-key-file."});
    }
    auto sealed = context_.secret_box->seal(credential->get_string(), name);
    if (!sealed.ok())
      co_return error_reply(sealed.error());
    settings.credential = std::move(sealed).value();
  }
  auto root = text_field(body_, "root");
  if (!root.ok())
    co_return error_reply(root.error());
  if (root->empty()) {
    // An update may leave the root out: a vendor keeps the root it was created in.
    auto existing = co_await load_vendor(name);
    if (!existing.ok() && existing.error().code != ErrorCode::not_found)
      co_return error_reply(existing.error());
    if (!existing.ok()) {
      co_return error_reply(
          invalid("missing_field", "Field \"root\" is required to create a vendor."));
    }
    *root = existing->root;
  }
  auto path = parse_path(*root);
  if (!path.ok() || !path->is_root())
    co_return error_reply(invalid("invalid_root", "Field \"root\" must name a root budget."));
  Command command = base_command(CommandKind::set_vendor, *path, "PUT /v1/vendors/" + name);
  command.vendor_settings = std::move(settings);
  co_return co_await execute(std::move(command));
}

awaitable<ApiReply> Handler::get_vendor(const std::string& name) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  if (Status valid = check_vendor_name(name); !valid.ok())
    co_return error_reply(valid.error());
  auto vendor = co_await load_vendor(name);
  if (!vendor.ok())
    co_return error_reply(vendor.error());
  co_return json_reply(200, vendor_to_json(*vendor));
}

awaitable<ApiReply> Handler::list_vendors() {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto list_work = [this] { return context_.store.list_vendors(); };
  auto all = co_await run_blocking(context_.read_pool, std::move(list_work));
  if (!all.ok())
    co_return error_reply(all.error());
  boost::json::array out;
  for (const ledger::Vendor& vendor : *all)
    out.push_back(vendor_to_json(vendor));
  co_return json_reply(200, boost::json::object{{"vendors", std::move(out)}});
}

awaitable<ApiReply> Handler::delete_vendor(const std::string& name) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  if (Status valid = check_vendor_name(name); !valid.ok())
    co_return error_reply(valid.error());
  auto vendor = co_await load_vendor(name);
  if (!vendor.ok())
    co_return error_reply(vendor.error());
  Command command = base_command(CommandKind::delete_vendor, *BudgetPath::parse(vendor->root),
                                 "DELETE /v1/vendors/" + name);
  command.vendor_settings.name = name;
  command.idempotency_key.clear();  // a delete is idempotent by itself
  co_return co_await execute(std::move(command));
}

}  // namespace stub::http::detail
