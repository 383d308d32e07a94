// The fibers of the SIMT executor: each CUDA thread runs on its own stack, and a worker thread switches
// between them only inside collectives. The switch is a few instructions of assembly on x86-64 (the
// callee-saved registers and the floating-point control state), ucontext elsewhere. A fiber's region is
// kFiberBytes-aligned, so that kernel code finds its ThreadCtx from the stack pointer alone (simt.h). Also
// here: finding this module's thread-local block on a worker, which holds every static __shared__ variable,
// and filling it with NaN at block start.
#include <cstring>

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

namespace grpo_simt {
namespace detail {

// ---- context switching ----------------------------------------------------------------------------------------------
#ifndef GRPO_SIMT_USE_UCONTEXT
extern "C" {
// First frame of a fiber: reached by the `ret` of grpo_simt_switch on a fresh stack.
void grpo_simt_fiber_trampoline() __attribute__((visibility("hidden")));
}
asm(R"(
    .text
    .p2align 4
    .globl grpo_simt_switch
    .hidden grpo_simt_switch
    .type grpo_simt_switch, @function
grpo_simt_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    fldcw (%rsp)
    ldmxcsr 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size grpo_simt_switch, .-grpo_simt_switch

    .p2align 4
    .globl grpo_simt_fiber_trampoline
    .hidden grpo_simt_fiber_trampoline
    .type grpo_simt_fiber_trampoline, @function
grpo_simt_fiber_trampoline:
    xorl %ebp, %ebp
    call grpo_simt_fiber_main@PLT
    ud2
    .size grpo_simt_fiber_trampoline, .-grpo_simt_fiber_trampoline
)");
#endif

// Layout of a fiber's region: [Fiber at ctx_offset][guard page][stack ... top - ctx_offset]. The stack
// top is staggered like the header, for the same reason.
size_t page_size() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}
size_t fiber_header_bytes() {
  const size_t page = page_size();
  return (kCtxSlots * kCtxSlotBytes + sizeof(Fiber) + page - 1) / page * page;
}

FpControl current_fp_control() {
  FpControl c;
#ifndef GRPO_SIMT_USE_UCONTEXT
  asm volatile("fnstcw %0" : "=m"(c.fcw));
  asm volatile("stmxcsr %0" : "=m"(c.mxcsr));
#endif
  return c;
}

// A fiber starts with the floating-point control state of the worker that prepares it.
void prepare_fiber(Fiber* f, const FpControl& fp) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(f) & ~(kFiberBytes - 1);
  unsigned char* const region = reinterpret_cast<unsigned char*>(base);
  unsigned char* const top = region + kFiberBytes - ctx_offset(base);
#ifdef GRPO_SIMT_USE_UCONTEXT
  unsigned char* const stack = region + fiber_header_bytes() + page_size();
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = stack;
  f->uc.uc_stack.ss_size = static_cast<size_t>(top - stack);
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, reinterpret_cast<void (*)()>(&grpo_simt_fiber_main), 0);
  (void)fp;
#else
  // The frame grpo_simt_switch pops: control words, r15..r12, rbx, rbp, then the return address. The
  // trampoline is entered with a 16-byte aligned stack, so its call leaves the ABI's alignment intact.
  uint64_t words[9] = {0, 0, 0, 0, 0, 0, 0, 0, reinterpret_cast<uint64_t>(&grpo_simt_fiber_trampoline)};
  std::memcpy(&words[0], &fp.fcw, sizeof fp.fcw);
  std::memcpy(&words[1], &fp.mxcsr, sizeof fp.mxcsr);
  unsigned char* sp = top - sizeof words;
  std::memcpy(sp, words, sizeof words);
  f->sp = sp;
#endif
}

// ---- thread-local storage of this module (static __shared__) ---------------------------------------------------------
// Touching it forces the module's TLS block to exist on a worker; its address identifies that block.
thread_local unsigned char t_tls_anchor;

namespace {

struct TlsSearch {
  const unsigned char* anchor;
  unsigned char* base;
  size_t size;
};

int find_tls_block(dl_phdr_info* info, size_t, void* data) {
  auto* s = static_cast<TlsSearch*>(data);
  if (info->dlpi_tls_data == nullptr) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type != PT_TLS) continue;
    auto* b = static_cast<unsigned char*>(info->dlpi_tls_data);
    const size_t n = info->dlpi_phdr[i].p_memsz;
    if (s->anchor >= b && s->anchor < b + n) {
      s->base = b;
      s->size = n;
      return 1;
    }
  }
  return 0;
}

}  // namespace

bool g_tls_warned = false;

void discover_tls(Worker* w) {
  t_tls_anchor = 1;
  t_is_worker = 1;
  TlsSearch s{&t_tls_anchor, nullptr, 0};
  dl_iterate_phdr(find_tls_block, &s);
  if (s.base == nullptr) return;
  w->tls_base = s.base;
  w->tls_size = s.size;
  // Ranges that must survive the fills: our own flag, and the C++ runtime's per-thread state in case
  // libstdc++ is linked statically into this module (exception globals, std::call_once).
  std::vector<std::pair<size_t, size_t>> keep;
  auto keep_range = [&](const void* p, size_t n) {
    auto* c = static_cast<const unsigned char*>(p);
    if (c >= s.base && c + n <= s.base + s.size) keep.emplace_back(c - s.base, c - s.base + n);
  };
  keep_range(&t_is_worker, sizeof t_is_worker);
  keep_range(abi::__cxa_get_globals(), 2 * sizeof(void*));
#if defined(__GLIBCXX__) && defined(_GLIBCXX_HAVE_TLS)
  keep_range(&std::__once_callable, sizeof(void*));
  keep_range(&std::__once_call, sizeof(void*));
#endif
  std::sort(keep.begin(), keep.end());
  size_t at = 0;
  for (const auto& k : keep) {
    if (k.first > at) w->tls_fill.emplace_back(at, k.first);
    at = std::max(at, k.second);
  }
  if (at < s.size) w->tls_fill.emplace_back(at, s.size);
}

void fill_tls(Worker* w) {
  for (const auto& r : w->tls_fill) std::memset(w->tls_base + r.first, 0xFF, r.second - r.first);
}

}  // namespace detail
}  // namespace grpo_simt
