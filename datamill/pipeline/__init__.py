"""datamill.pipeline"""
