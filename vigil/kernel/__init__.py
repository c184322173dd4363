"""The syscall seam: every system call and binding the other layers use."""
