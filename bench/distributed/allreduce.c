/* OSU-style all-reduce timing (f32 sum, in place, MPI_COMM_WORLD): the baseline of bench/distributed.mjs, what a
 * C program gets from the same MPI without node-grpo in between. For each size given in bytes it runs 3 warm-up
 * calls, then `reps` timed calls, each after a barrier so that every call starts with all ranks present. A call's
 * time is the slowest rank's (as OSU's osu_allreduce takes the per-rank maximum); rank 0 prints
 * "bytes mean-ms reps median-ms min-ms": the mean is OSU's figure, the median and the fastest call say what a call
 * costs when the machine's other work does not deschedule a rank (bench/distributed.md).
 * Built with -DNONBLOCKING it calls what node-grpo's communication thread calls instead: MPI_Iallreduce, then
 * MPI_Test until done, which tells the cost of the non-blocking algorithm from that of node-grpo's own layers. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int reps_for(long bytes) { return bytes <= 65536 ? 200 : bytes <= 4194304 ? 30 : 8; }

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  for (int a = 1; a < argc; a++) {
    long bytes = atol(argv[a]);
    int n = bytes / 4 > 0 ? (int)(bytes / 4) : 1;
    float* buffer = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) buffer[i] = 1.0f / (float)size;
    for (int i = 0; i < 3; i++) MPI_Allreduce(MPI_IN_PLACE, buffer, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    int reps = reps_for(bytes);
    double* ms = malloc((size_t)reps * sizeof(double));
    double* worst = malloc((size_t)reps * sizeof(double));
    for (int i = 0; i < reps; i++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double start = MPI_Wtime();
#ifdef NONBLOCKING
      MPI_Request request;
      int done = 0;
      MPI_Iallreduce(MPI_IN_PLACE, buffer, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
      while (!done) MPI_Test(&request, &done, MPI_STATUS_IGNORE);
#else
      MPI_Allreduce(MPI_IN_PLACE, buffer, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
#endif
      ms[i] = (MPI_Wtime() - start) * 1e3;
    }
    MPI_Reduce(ms, worst, reps, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      double sum = 0;
      for (int i = 0; i < reps; i++) sum += worst[i];
      qsort(worst, (size_t)reps, sizeof(double), by_value);
      printf("%ld %.6f %d %.6f %.6f\n", (long)n * 4, sum / reps, reps, worst[reps / 2], worst[0]);
    }
    free(ms);
    free(worst);
    free(buffer);
  }
  MPI_Finalize();
  return 0;
}
