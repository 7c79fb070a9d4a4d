/*
 * For the Windows smoke test under Wine only; never shipped. Preloaded into Wine's Linux
 * processes on a CPU with AMX. Windows lets every process use the AMX tiles; Linux lets
 * only a process that asks (arch_prctl ARCH_REQ_XCOMP_PERM), and Wine 8 does not ask.
 * Code that sees AMX in CPUID and the OS's XCR0, as on Windows (ONNX Runtime's MLAS, for
 * one), then dies of SIGILL at its first tile instruction. This asks for the permission
 * as each Wine process starts; it holds for all of that process's threads.
 */
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

__attribute__((constructor)) static void request_amx(void) {
  syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
}
