// Asynchronous signals (Ctrl-C, SIGTERM, ...) never interrupt the thread that computes.
//
// Why: on the machines this runs on, a signal handled while the JS thread is inside libtorch/oneDNN kernels
// corrupts the C heap some hundred deliveries later at the latest ("corrupted size vs. prev_size", SIGSEGV):
// measured with `alexnet train` and a no-op handler (a JS listener or a plain C handler alike) for a signal sent
// every few ms, 7 of 7 runs aborted; with the same signals taken by another thread, 0 of 3 (over 800 signals
// each). A data-parallel run's Ctrl-C reaches each rank mid-step, so one run in four died that way.
// Node's handlers only write to a pipe that the event loop reads, so any thread may take the signal: this one
// starts an idle thread that does, and blocks the signals in the calling thread (threads it starts later, e.g.
// libtorch's and Gloo's, inherit the mask). Node blocks SIGUSR1 in its main thread the same way, for its
// inspector. Synchronous signals (SIGSEGV, SIGFPE, ...) and thread-directed ones (V8's SIGPROF) are left alone;
// child processes get an empty mask from libuv before exec.
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <mutex>

namespace alexnet {

namespace {

const int kRouted[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR2, SIGWINCH, SIGCHLD};

void* TakeSignals(void*) {
  for (;;) pause();
  return nullptr;
}

}  // namespace

void RouteSignalsAway() {
  static std::once_flag started;
  static bool ok = false;
  std::call_once(started, [] {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    ok = pthread_create(&t, &attr, TakeSignals, nullptr) == 0;
    pthread_attr_destroy(&attr);
  });
  if (!ok) return;  // no other thread to take them: leave this thread as it was
  sigset_t set;
  sigemptyset(&set);
  for (int s : kRouted) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace alexnet
