"""HTTP for the provider clients: bounded, cancellable requests (net.http), the watch that shuts a socket
when a wait is cancelled or a transfer stalls (net.watch)."""
