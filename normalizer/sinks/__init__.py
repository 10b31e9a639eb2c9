"""Where records go: a file descriptor (stdout, a file); later the network server and a message broker."""
