"""datamill.simulator"""
