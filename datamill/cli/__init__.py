"""datamill.cli"""
