// LD_PRELOAD library for `--avx2` benchmark runs (bench/common.js): the process sees a CPU
// without AVX-512, AVX-VNNI or AMX, so that every library in it (ggml's CPU build choice,
// ONNX Runtime's MLAS, V8) takes the code it takes on an AVX2-only machine, at this
// machine's native speed. Linux makes the CPUID instruction fault in this process
// (ARCH_SET_CPUID, on CPUs with CPUID faulting: /proc/cpuinfo's cpuid_fault), and the
// handler below answers it: the real answer with those feature bits cleared. What the
// kernel reports in /proc/cpuinfo is unchanged, and so is XGETBV; libraries that check
// both (all of the above) go by CPUID's bits.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012

static struct sigaction previous;

static void on_segv(int sig, siginfo_t *info, void *context) {
  ucontext_t *uc = context;
  greg_t *r = uc->uc_mcontext.gregs;
  const uint8_t *ip = (const uint8_t *)r[REG_RIP];
  if (ip[0] == 0x0f && ip[1] == 0xa2) {  // cpuid
    uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX];
    uint32_t a = leaf, b, c = sub, d;
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    if (leaf == 7 && sub == 0) {
      // AVX-512 F, DQ, IFMA, PF, ER, CD, BW, VL
      b &= ~(1u << 16 | 1u << 17 | 1u << 21 | 1u << 26 | 1u << 27 | 1u << 28 | 1u << 30 | 1u << 31);
      // AVX-512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ
      c &= ~(1u << 1 | 1u << 6 | 1u << 11 | 1u << 12 | 1u << 14);
      // AVX-512 4VNNIW, 4FMAPS, VP2INTERSECT, FP16; AMX BF16, TILE, INT8
      d &= ~(1u << 2 | 1u << 3 | 1u << 8 | 1u << 22 | 1u << 23 | 1u << 24 | 1u << 25);
    } else if (leaf == 7 && sub == 1) {
      a &= ~(1u << 4 | 1u << 5 | 1u << 23);  // AVX-VNNI, AVX-512 BF16, AVX-IFMA
    }
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
    return;
  }
  // A fault of another kind: whoever handled it before, else the default (a crash).
  if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
    previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
  } else {
    signal(sig, SIG_DFL);
  }
}

__attribute__((constructor)) static void start(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &previous);
  // Threads inherit it; exec clears it, and the library, preloaded again, sets it again.
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
    perror("bench/avx2-only.c: this CPU or kernel cannot make CPUID fault (ARCH_SET_CPUID)");
    _exit(70);
  }
}
