mod channel;
