// Routes: Webhooks: configuration and the delivery log.

#include <set>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/render.hpp"
#include "http/request_decoders.hpp"
#include "http/request_fields.hpp"
#include "http/text_checks.hpp"
#include "ledger/budget_path.hpp"
#include "webhooks/events.hpp"
#include "webhooks/sender.hpp"

namespace stub::http::detail {

// PUT/GET/DELETE /v1/webhooks/{name}, GET /v1/webhooks, GET /v1/webhooks/{name}/deliveries.
awaitable<std::optional<ApiReply>> Handler::route_webhooks() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  if (n < 2 || s[1] != "webhooks")
    co_return std::nullopt;
  if (n == 2 && method == "GET")
    co_return co_await list_webhooks();
  if (n == 3 && method == "PUT")
    co_return co_await put_webhook(s[2]);
  if (n == 3 && method == "GET")
    co_return co_await get_webhook(s[2]);
  if (n == 3 && method == "DELETE")
    co_return co_await delete_webhook(s[2]);
  if (n == 4 && s[3] == "deliveries" && method == "GET")
    co_return co_await list_deliveries(s[2]);
  co_return std::nullopt;
}

// Reads a webhook (admin only), or the error to answer.
awaitable<Result<ledger::Webhook>> Handler::load_webhook(const std::string& name) {
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto webhook_work = [this, name] { return context_.store.get_webhook(name); };
  auto webhook = co_await run_blocking(context_.read_pool, std::move(webhook_work));
  if (!webhook.ok())
    co_return webhook.error();
  if (!webhook.value())
    co_return Error{ErrorCode::not_found, "webhook_not_found", "No webhook " + name + "."};
  co_return *webhook.value();
}

awaitable<ApiReply> Handler::put_webhook(const std::string& name) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto fields = decode_webhook(body_, name);
  if (!fields.ok())
    co_return error_reply(fields.error());
  ledger::WebhookSettings& settings = fields->settings;
  std::string* root = &fields->root;
  if (root->empty()) {
    // An update may leave the root out: a webhook keeps the root it was created in.
    auto existing = co_await load_webhook(name);
    if (!existing.ok() && existing.error().code != ErrorCode::not_found)
      co_return error_reply(existing.error());
    if (!existing.ok()) {
      co_return error_reply(
          Error::invalid("missing_field", "Field \"root\" is required to create a webhook."));
    }
    *root = existing->root;
  }
  auto path = parse_path(*root);
  if (!path.ok() || !path->is_root()) {
    co_return error_reply(
        Error::invalid("invalid_root", "Field \"root\" must name a root budget."));
  }
  Command command = base_command(CommandKind::set_webhook, *path, "PUT /v1/webhooks/" + name);
  command.webhook = std::move(settings);
  co_return co_await execute(std::move(command));
}

awaitable<ApiReply> Handler::get_webhook(const std::string& name) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto webhook = co_await load_webhook(name);
  if (!webhook.ok())
    co_return error_reply(webhook.error());
  co_return json_reply(200, webhook_to_json(*webhook));
}

awaitable<ApiReply> Handler::list_webhooks() {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  const std::string root = target_.query["root"];
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto list_work = [this] { return context_.store.list_webhooks(); };
  auto all = co_await run_blocking(context_.read_pool, std::move(list_work));
  if (!all.ok())
    co_return error_reply(all.error());
  boost::json::array out;
  for (const ledger::Webhook& webhook : *all) {
    if (root.empty() || webhook.root == root)
      out.push_back(webhook_to_json(webhook));
  }
  co_return json_reply(200, boost::json::object{{"webhooks", std::move(out)}});
}

awaitable<ApiReply> Handler::delete_webhook(const std::string& name) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto webhook = co_await load_webhook(name);
  if (!webhook.ok())
    co_return error_reply(webhook.error());
  Command command = base_command(CommandKind::delete_webhook, *BudgetPath::parse(webhook->root),
                                 "DELETE /v1/webhooks/" + name);
  command.webhook.name = name;
  command.idempotency_key.clear();  // a delete is idempotent by itself
  co_return co_await execute(std::move(command));
}

awaitable<ApiReply> Handler::list_deliveries(const std::string& name) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto limit = integer_query("limit", 100, 1, static_cast<int64_t>(Api::entries_page_max));
  if (!limit.ok())
    co_return error_reply(limit.error());
  auto webhook = co_await load_webhook(name);
  if (!webhook.ok())
    co_return error_reply(webhook.error());
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto deliveries_work = [this, name, count = static_cast<size_t>(*limit)] {
    return context_.store.list_deliveries(name, count);
  };
  auto deliveries = co_await run_blocking(context_.read_pool, std::move(deliveries_work));
  if (!deliveries.ok())
    co_return error_reply(deliveries.error());
  const auto time_or_null = [](ledger::Micros at) {
    return at == 0 ? boost::json::value(nullptr) : boost::json::value(ledger::format_timestamp(at));
  };
  boost::json::array out;
  for (const store::WebhookDelivery& delivery : *deliveries) {
    out.push_back(boost::json::object{
        {"event_id", delivery.event_id},
        {"event", delivery.event},
        {"seq", delivery.seq},
        {"status", delivery.status},
        {"attempts", delivery.attempts},
        {"last_status", delivery.last_status == 0 ? boost::json::value(nullptr)
                                                  : boost::json::value(delivery.last_status)},
        {"last_error", delivery.last_error.empty() ? boost::json::value(nullptr)
                                                   : boost::json::value(delivery.last_error)},
        {"next_attempt_at",
         delivery.status == "pending" ? time_or_null(delivery.next_attempt_at) : nullptr},
        {"created_at", time_or_null(delivery.created_at)},
        {"delivered_at", time_or_null(delivery.delivered_at)}});
  }
  co_return json_reply(200, boost::json::object{{"deliveries", std::move(out)}});
}

}  // namespace stub::http::detail
