// Fiber scheduler of the CUDA emulator (see shim.hpp).
#include <ucontext.h>
#include <setjmp.h>
#include <vector>
#include <functional>
#include <string>

namespace emu {
enum State { RUN = 0, AT_BLOCK = 1, AT_WARP = 2, DONE = 3 };
// A fiber is entered the first time with swapcontext (to get onto its own stack) and after
// that with _setjmp/_longjmp, which do not save the signal mask (no system call per switch).
struct Fiber {
    ucontext_t ctx;
    jmp_buf jb;
    bool started;
    unsigned tid;
    int state;
};
static ucontext_t sched;
static jmp_buf sched_jb;
static std::vector<Fiber> fibers;
static Fiber* cur = nullptr;
static std::function<void()> body;
static std::vector<double> slots;  // [warps][32]
static std::vector<unsigned> words;  // [warps][32 × 6] (mma fragments)
// Fiber stacks, allocated once (uninitialised: zeroing them per block would dominate).
static const size_t STACK = 128 * 1024;
static std::vector<char*> stacks;

static void fiber_main() {
    body();
    cur->state = DONE;
    _longjmp(sched_jb, 1);
}

static void resume(Fiber& f) {
    cur = &f;
    threadIdx = {f.tid, 0, 0};
    if (_setjmp(sched_jb) == 0) {
        if (!f.started) {
            f.started = true;
            swapcontext(&sched, &f.ctx);
        } else {
            _longjmp(f.jb, 1);
        }
    }
}

// Runs one block; returns an error message or "".
static std::string run_block(unsigned nthreads) {
    fibers.assign(nthreads, Fiber());
    slots.assign(((nthreads + 31) / 32) * 32, 0.0);
    words.assign(((nthreads + 31) / 32) * 32 * 6, 0u);
    for (unsigned t = 0; t < nthreads; ++t) {
        Fiber& f = fibers[t];
        f.tid = t;
        f.state = RUN;
        f.started = false;
        while (stacks.size() <= t) stacks.push_back(new char[STACK]);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks[t];
        f.ctx.uc_stack.ss_size = STACK;
        f.ctx.uc_link = &sched;
        makecontext(&f.ctx, fiber_main, 0);
    }
    unsigned warps = (nthreads + 31) / 32;
    for (;;) {
        bool ran = false;
        for (auto& f : fibers) {
            if (f.state != RUN) continue;
            resume(f);
            ran = true;
        }
        bool released = false;
        // Block barrier: every live thread waiting at it.
        unsigned live = 0, at_block = 0;
        for (auto& f : fibers) {
            if (f.state != DONE) ++live;
            if (f.state == AT_BLOCK) ++at_block;
        }
        if (live == 0) return "";
        if (at_block > 0 && at_block == live) {
            for (auto& f : fibers)
                if (f.state == AT_BLOCK) f.state = RUN;
            released = true;
        }
        for (unsigned w = 0; w < warps; ++w) {
            unsigned wl = 0, wa = 0;
            for (unsigned t = w * 32; t < nthreads && t < w * 32 + 32; ++t) {
                if (fibers[t].state != DONE) ++wl;
                if (fibers[t].state == AT_WARP) ++wa;
            }
            if (wa > 0 && wa == wl) {
                for (unsigned t = w * 32; t < nthreads && t < w * 32 + 32; ++t)
                    if (fibers[t].state == AT_WARP) fibers[t].state = RUN;
                released = true;
            }
        }
        if (!ran && !released) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "deadlock in block (%u,%u,%u): %u live threads, %u at __syncthreads",
                     blockIdx.x, blockIdx.y, blockIdx.z, live, at_block);
            return msg;
        }
    }
}
}  // namespace emu

static void emu_yield(int state) {
    emu::cur->state = state;
    if (_setjmp(emu::cur->jb) == 0) _longjmp(emu::sched_jb, 1);
}
void emu_block_barrier() { emu_yield(emu::AT_BLOCK); }
void emu_warp_barrier() { emu_yield(emu::AT_WARP); }
double* emu_warp_slots() { return emu::slots.data() + (threadIdx.x / 32) * 32; }
unsigned* emu_warp_words() { return emu::words.data() + (threadIdx.x / 32) * 32 * 6; }

template <class... A, size_t... I>
static void emu_call_impl(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}
template <class... A>
static void emu_call(void (*f)(A...), void** p) {
    emu_call_impl(f, p, std::index_sequence_for<A...>{});
}

static int emu_grid(const std::function<void()>& launch_one, unsigned gx, unsigned gy,
                    unsigned gz, unsigned block, char* err, int errlen) {
    gridDim = {gx, gy, gz};
    blockDim = {block, 1, 1};
    emu::body = launch_one;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                blockIdx = {x, y, z};
                std::string e = emu::run_block(block);
                if (!e.empty()) {
                    snprintf(err, errlen, "%s", e.c_str());
                    return 1;
                }
            }
    return 0;
}
