mod examples;
mod scripted_wire;
