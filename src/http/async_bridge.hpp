#pragma once

// Bridges from a connection's coroutine to work that must not run on an io_context thread:
// blocking store reads (on the read pool) and commands (on the sequencer's committer). Each
// resumes the coroutine on its own executor when the work is done.

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <type_traits>

#include "engine/sequencer.hpp"

namespace stub::http {

template <typename Function>
boost::asio::awaitable<std::invoke_result_t<Function>> run_blocking(boost::asio::thread_pool& pool,
                                                                    Function function) {
  using Value = std::invoke_result_t<Function>;
  auto executor = co_await boost::asio::this_coro::executor;
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(Value)>(
      [&pool, executor](auto handler, Function work) {
        boost::asio::post(
            pool, [handler = std::move(handler), work = std::move(work), executor]() mutable {
              Value value = work();
              boost::asio::post(executor,
                                [handler = std::move(handler), value = std::move(value)]() mutable {
                                  std::move(handler)(std::move(value));
                                });
            });
      },
      boost::asio::use_awaitable, std::move(function));
}

inline boost::asio::awaitable<ledger::Outcome> submit_command(engine::Sequencer& sequencer,
                                                              ledger::Command command) {
  auto executor = co_await boost::asio::this_coro::executor;
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable),
                                                 void(ledger::Outcome)>(
      [&sequencer, executor](auto handler, ledger::Command queued) {
        // The sequencer's callback type is copyable; the coroutine's handler is move-only.
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        sequencer.submit(std::move(queued), [shared, executor](ledger::Outcome outcome) {
          boost::asio::post(executor, [shared, outcome = std::move(outcome)]() mutable {
            std::move (*shared)(std::move(outcome));
          });
        });
      },
      boost::asio::use_awaitable, std::move(command));
}

}  // namespace stub::http
