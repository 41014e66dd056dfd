#include "http/replays.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "ledger/time_point.hpp"

namespace stub::http {

std::string replay_status_json(const ReplayStatus& status) {
  boost::json::array seconds;
  for (const ReplaySecond& second : status.seconds) {
    seconds.push_back(boost::json::object{{"second", second.second},
                                          {"attempted", second.attempted},
                                          {"committed", second.committed},
                                          {"refused", second.refused}});
  }
  boost::json::object body{
      {"id", status.id},
      {"root", status.root},
      {"state", status.state},
      {"workers", status.workers},
      {"attempted", status.attempted},
      {"committed", status.committed},
      {"refused", status.refused},
      {"errors", status.errors},
      {"committed_amount", status.committed_amount},
      {"started_at", ledger::format_timestamp(status.started_at)},
      {"seconds", std::move(seconds)},
  };
  if (!status.error.empty())
    body["error"] = status.error;
  if (status.state == "finished") {
    body["finished_at"] = ledger::format_timestamp(status.finished_at);
    body["root_spent"] = status.root_spent;
    body["root_limit"] = status.root_limit;
    body["overspend"] = status.overspend;
    body["chain_verified"] = status.chain_verified;
    body["chain_checked"] = status.chain_checked;
    body["head_hash"] = status.head_hash;
  }
  return boost::json::serialize(body);
}

}  // namespace stub::http
