// Runs a test body as the root fiber of a fresh carrier on its own OS thread, then retires
// the carrier: the runtime used as an ordinary library, without LD_PRELOAD.
#pragma once

#include <gtest/gtest.h>

#include <thread>

#include "runtime/runtime.h"

template <typename Body>
void on_carrier(Body body, green::RuntimeConfig config = {}) {
    std::thread carrier([&] {
        ASSERT_TRUE(green::adopt_current_thread(config));
        body();
        green::retire_current_thread();
    });
    carrier.join();
}

// Spawns fn on a new fiber of the current carrier; join with green::join.
template <typename Fn>
green::Fiber* go(Fn* fn) {
    green::Fiber* fiber = nullptr;
    int err = green::spawn(
        [](void* arg) -> void* {
            (*static_cast<Fn*>(arg))();
            return nullptr;
        },
        fn, {}, &fiber);
    EXPECT_EQ(err, 0);
    return fiber;
}
