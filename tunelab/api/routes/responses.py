"""Placeholder: routes for this resource are added by its issue."""

from fastapi import APIRouter

router = APIRouter()
