"""runtime.v1.ImageService: validate and call the adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from pycrid.adapters.base import Adapter, Images
from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.server.servicers import validate
from pycrid.server.servicers.runtime import batches, served

Context: TypeAlias = grpc.aio.ServicerContext


class ImageServicer(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    def _images(self, rpc: str) -> Images:
        return served(self.adapter, self.adapter.images, rpc)

    async def ListImages(
        self, request: cri.ListImagesRequest, context: Context
    ) -> cri.ListImagesResponse:
        validate.image_filter(request.filter)
        return await self._images("ListImages").list_images(request)

    async def StreamImages(
        self, request: cri.StreamImagesRequest, context: Context
    ) -> AsyncIterator[cri.StreamImagesResponse]:
        validate.image_filter(request.filter)
        listed = await self._images("StreamImages").list_images(
            cri.ListImagesRequest(filter=request.filter)
        )
        for batch in batches(list(listed.images)):
            yield cri.StreamImagesResponse(images=batch)

    async def ImageStatus(
        self, request: cri.ImageStatusRequest, context: Context
    ) -> cri.ImageStatusResponse:
        validate.image_spec(request.image)
        return await self._images("ImageStatus").image_status(request)

    async def PullImage(
        self, request: cri.PullImageRequest, context: Context
    ) -> cri.PullImageResponse:
        validate.message(request)
        validate.image_spec(request.image)
        validate.auth_config(request.auth)
        return await self._images("PullImage").pull_image(request)

    async def RemoveImage(
        self, request: cri.RemoveImageRequest, context: Context
    ) -> cri.RemoveImageResponse:
        validate.image_spec(request.image)
        return await self._images("RemoveImage").remove_image(request)

    async def ImageFsInfo(
        self, request: cri.ImageFsInfoRequest, context: Context
    ) -> cri.ImageFsInfoResponse:
        return await self._images("ImageFsInfo").image_fs_info(request)
