// Placeholder: the SSE load client and benchmark origin (issue 4) replace this.
print("lifeline-bench: not built yet")
