"""drillbot's benchmarks: one script per question, each runnable on its own (see BENCHMARKS.md)."""
