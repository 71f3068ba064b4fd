"""datamill.core"""
