mod terminal_pty;
