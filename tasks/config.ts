// The LTSP part of ltspfile.ts: images, boot artifacts and server settings.
export interface LtspConfig {}
