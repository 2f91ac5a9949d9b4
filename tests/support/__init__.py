"""Test helpers shared by several test modules (a loopback fake OpenAI server)."""
