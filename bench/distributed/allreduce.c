/* OSU-style all-reduce timing (f32 sum, in place, MPI_COMM_WORLD): the baseline of bench/distributed.mjs, what a
 * C program gets from the same MPI without node-grpo in between. For each size given in bytes it runs 3 warm-up
 * calls, a barrier, then `reps` timed calls, and rank 0 prints "bytes milliseconds-per-call reps" with the
 * slowest rank's time (as OSU's osu_allreduce reports the average over ranks of the per-rank maximum). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int reps_for(long bytes) { return bytes <= 65536 ? 200 : bytes <= 4194304 ? 30 : 8; }

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
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (int i = 0; i < reps; i++) MPI_Allreduce(MPI_IN_PLACE, buffer, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double ms = (MPI_Wtime() - start) * 1e3 / reps, worst = 0;
    MPI_Reduce(&ms, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("%ld %.6f %d\n", (long)n * 4, worst, reps);
    free(buffer);
  }
  MPI_Finalize();
  return 0;
}
