"""Vending machines as the hub sees them: the machine protocol, virtual machines, the agent."""
